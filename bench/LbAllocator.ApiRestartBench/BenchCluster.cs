using System.Globalization;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using LbAllocator.TestApiServer;

namespace LbAllocator.ApiRestartBench;

/// <summary>What both modes start from: etcd and kube-apiserver with the CRDs established and the install namespace.</summary>
internal static class BenchCluster
{
    public const string Ns = "lballocator-system";

    public static async Task<KubeApiServer> StartAsync()
    {
        var server = await KubeApiServer.StartAsync();
        try
        {
            await server.KubectlMustAsync("apply", "--server-side", "-k", Path.Combine(InstallManifests.RepoRoot, "config", "crd"));
            await server.KubectlMustAsync("wait", "--for=condition=Established", "crd/ipaddresspools.lballocator.io", "crd/l2advertisements.lballocator.io", "crd/servicel2statuses.lballocator.io", "--timeout=60s");
            using var api = server.CreateApi();
            await api.CreateAsync(KubeResources.Namespaces, null, new V1Namespace { Metadata = new V1ObjectMeta { Name = Ns } });
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }
}

/// <summary>The command line's options: "--name value".</summary>
internal static class BenchArgs
{
    public static int Int(string[] args, string name, int fallback) =>
        Value(args, name) is { } text ? int.Parse(text, CultureInfo.InvariantCulture) : fallback;

    public static int[] Ints(string[] args, string name, int[] fallback) =>
        Value(args, name) is { } text ? [.. text.Split(',').Select(n => int.Parse(n, CultureInfo.InvariantCulture))] : fallback;

    public static string Text(string[] args, string name, string fallback) => Value(args, name) ?? fallback;

    private static string? Value(string[] args, string name) =>
        Array.IndexOf(args, name) is var at and >= 0 && at + 1 < args.Length ? args[at + 1] : null;
}
