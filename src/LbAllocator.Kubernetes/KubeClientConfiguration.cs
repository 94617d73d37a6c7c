using k8s;
using k8s.Exceptions;
using k8s.KubeConfigModels;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace LbAllocator.Kubernetes;

/// <summary>
/// The client configuration: --kubeconfig, else KUBECONFIG or ~/.kube/config, else the in-cluster service account.
/// The kubeconfig file is read here rather than by the client, whose reader is YamlDotNet's reflection deserializer:
/// the published binary is NativeAOT, where that fails. What it reads is what the client uses (clusters, users,
/// contexts, current-context); relative file paths are taken from the file's directory, as kubectl does.
/// </summary>
public static class KubeClientConfiguration
{
    public static KubernetesClientConfiguration Load(string? kubeconfig)
    {
        var path = !string.IsNullOrEmpty(kubeconfig) ? kubeconfig : DefaultFile();
        if (path is null)
        {
            return KubernetesClientConfiguration.InClusterConfig();
        }

        try
        {
            return KubernetesClientConfiguration.BuildConfigFromConfigObject(Read(path));
        }
        catch (Exception e) when (e is not KubeConfigException)
        {
            // The client fails on incomplete configurations with bare NullReference exceptions.
            throw new KubeConfigException($"kubeconfig {path} could not be read: {e.Message}");
        }
    }

    /// <summary>The first file KUBECONFIG names, else ~/.kube/config if it exists; null: in the cluster.</summary>
    private static string? DefaultFile()
    {
        if (Environment.GetEnvironmentVariable("KUBECONFIG") is { Length: > 0 } list)
        {
            return list.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault(File.Exists)
                ?? throw new KubeConfigException($"KUBECONFIG names no file that exists ({list})");
        }

        var home = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".kube", "config");
        return File.Exists(home) ? home : null;
    }

    internal static K8SConfiguration Read(string path)
    {
        var yaml = new YamlStream();
        try
        {
            using var reader = File.OpenText(path);
            yaml.Load(reader);
        }
        catch (YamlException e)
        {
            throw new KubeConfigException($"kubeconfig {path}:{e.Start.Line}:{e.Start.Column}: {e.Message}");
        }
        catch (IOException e)
        {
            throw new KubeConfigException($"kubeconfig {path} could not be read: {e.Message}");
        }

        var root = yaml.Documents.Count == 1 && yaml.Documents[0].RootNode is YamlMappingNode map
            ? map
            : throw new KubeConfigException($"kubeconfig {path}: expected one YAML document holding a mapping");
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string? PathOf(YamlMappingNode node, string key) => Text(node, key) is { } file ? Path.Combine(directory, file) : null;

        return new K8SConfiguration
        {
            ApiVersion = Text(root, "apiVersion"),
            Kind = Text(root, "kind"),
            CurrentContext = Text(root, "current-context"),
            Clusters = Named(root, "clusters", "cluster", (name, c) => new Cluster
            {
                Name = name,
                ClusterEndpoint = new ClusterEndpoint
                {
                    Server = Text(c, "server"),
                    CertificateAuthority = PathOf(c, "certificate-authority"),
                    CertificateAuthorityData = Text(c, "certificate-authority-data"),
                    SkipTlsVerify = Text(c, "insecure-skip-tls-verify") is "true",
                    TlsServerName = Text(c, "tls-server-name"),
                },
            }),
            Users = Named(root, "users", "user", (name, u) => new User
            {
                Name = name,
                UserCredentials = new UserCredentials
                {
                    ClientCertificate = PathOf(u, "client-certificate"),
                    ClientCertificateData = Text(u, "client-certificate-data"),
                    ClientKey = PathOf(u, "client-key"),
                    ClientKeyData = Text(u, "client-key-data"),
                    Token = Text(u, "token") ?? (PathOf(u, "tokenFile") is { } tokenFile ? File.ReadAllText(tokenFile).Trim() : null),
                    UserName = Text(u, "username"),
                    Password = Text(u, "password"),
                    ExternalExecution = Child(u, "exec") is { } exec ? new ExternalExecution
                    {
                        ApiVersion = Text(exec, "apiVersion"),
                        Command = Text(exec, "command"),
                        Arguments = Sequence(exec, "args").Select(a => (a as YamlScalarNode)?.Value ?? "").ToList(),
                        EnvironmentVariables = Sequence(exec, "env").OfType<YamlMappingNode>()
                            .Select(e => new Dictionary<string, string> { ["name"] = Text(e, "name") ?? "", ["value"] = Text(e, "value") ?? "" }).ToList(),
                    } : null,
                },
            }),
            Contexts = Named(root, "contexts", "context", (name, c) => new Context
            {
                Name = name,
                ContextDetails = new ContextDetails { Cluster = Text(c, "cluster"), User = Text(c, "user"), Namespace = Text(c, "namespace") },
            }),
        };
    }

    private static YamlMappingNode? Child(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) ? child as YamlMappingNode : null;

    private static string? Text(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) && child is YamlScalarNode { Value: { Length: > 0 } value } ? value : null;

    private static IList<YamlNode> Sequence(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) && child is YamlSequenceNode sequence ? sequence.Children : [];

    /// <summary>A list of {name, KEY: {...}} entries, as kubeconfig keeps clusters, users and contexts.</summary>
    private static List<T> Named<T>(YamlMappingNode root, string list, string key, Func<string?, YamlMappingNode, T> create) =>
        Sequence(root, list).OfType<YamlMappingNode>().Select(entry => create(Text(entry, "name"), Child(entry, key) ?? new YamlMappingNode())).ToList();
}
