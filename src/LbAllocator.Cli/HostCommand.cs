using System.CommandLine;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace LbAllocator.Cli;

/// <summary>What the long-running verbs (controller, speaker) share: common options and how a host is run.</summary>
internal static class HostCommand
{
    public static Option<string?> Kubeconfig() =>
        new("--kubeconfig") { Description = "Path to a kubeconfig (default: KUBECONFIG, ~/.kube/config, or in-cluster)" };

    public static Option<string> LogLevel()
    {
        var option = new Option<string>("--log-level") { Description = "Trace, Debug, Information, Warning or Error", DefaultValueFactory = _ => "Information" };
        option.AcceptOnlyFromAmong("Trace", "Debug", "Information", "Warning", "Error");
        return option;
    }

    /// <summary>Runs the host until stopped. Bad options (exit 2) and an unreadable kubeconfig (exit 1) are one line on stderr.</summary>
    public static async Task<int> RunAsync(string verb, Func<IHost> build, TextWriter stderr, CancellationToken cancellationToken)
    {
        try
        {
            using var host = build();
            await host.RunAsync(cancellationToken);
            return CliApp.Ok;
        }
        catch (OptionsValidationException e)
        {
            stderr.WriteLine($"lballocator {verb}: invalid options: {string.Join("; ", e.Failures)}");
            return CliApp.Usage;
        }
        catch (Exception e) when (e is k8s.Exceptions.KubeConfigException or FileNotFoundException)
        {
            stderr.WriteLine($"lballocator {verb}: cannot load the cluster configuration: {e.Message}");
            return CliApp.Invalid;
        }
    }
}
