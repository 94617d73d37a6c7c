using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using LbAllocator.Kubernetes.Client;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace LbAllocator.Kubernetes;

/// <summary>
/// The connection to the API server: --kubeconfig, else the first file KUBECONFIG names or ~/.kube/config, else the
/// in-cluster service account. From a kubeconfig it takes the current context's cluster (server, certificate
/// authority, TLS name or skipping verification), user (client certificate, token, token file, basic credentials, or a
/// credential plugin's token) and namespace; relative file paths are taken from the file's directory, as kubectl does.
/// </summary>
public static class KubeClientConfiguration
{
    private const string ServiceAccount = "/var/run/secrets/kubernetes.io/serviceaccount";

    public static KubeConnection Load(string? kubeconfig, TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        var path = !string.IsNullOrEmpty(kubeconfig) ? kubeconfig : DefaultFile();
        return path is null ? InCluster(time) : FromFile(path, time);
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

    /// <summary>The pod's service account: the API server's address from the environment, its token read fresh each minute.</summary>
    private static KubeConnection InCluster(TimeProvider time)
    {
        var host = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST");
        var port = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_PORT");
        var token = Path.Combine(ServiceAccount, "token");
        if (string.IsNullOrEmpty(host) || string.IsNullOrEmpty(port) || !File.Exists(token))
        {
            throw new KubeConfigException(
                "no kubeconfig: give --kubeconfig, set KUBECONFIG or write ~/.kube/config; or run in a pod with a service account (KUBERNETES_SERVICE_HOST and PORT, " + token + ")");
        }

        var ns = Path.Combine(ServiceAccount, "namespace");
        try
        {
            return new KubeConnection
            {
                Host = new UriBuilder("https", host, int.Parse(port, System.Globalization.CultureInfo.InvariantCulture)).Uri.ToString().TrimEnd('/'),
                CaCertificates = Certificates(File.ReadAllText(Path.Combine(ServiceAccount, "ca.crt"))),
                Token = new TokenFile(token, time),
                Namespace = File.Exists(ns) ? File.ReadAllText(ns).Trim() : null,
            };
        }
        catch (Exception e) when (Unreadable(e))
        {
            throw new KubeConfigException($"the in-cluster service account ({ServiceAccount}, KUBERNETES_SERVICE_HOST {host}, PORT {port}) could not be read: {e.Message}");
        }
    }

    /// <summary>What reading a credential file or its PEM can throw: turned into a <see cref="KubeConfigException"/> that says where.</summary>
    private static bool Unreadable(Exception e) =>
        e is IOException or FormatException or CryptographicException or UnauthorizedAccessException or ArgumentException;

    private static KubeConnection FromFile(string path, TimeProvider time)
    {
        var root = Read(path);
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string? PathOf(YamlMappingNode node, string key) => Text(node, key) is { } file ? Path.Combine(directory, file) : null;
        string? DataOf(YamlMappingNode node, string key) =>
            Text(node, key + "-data") is { } data ? Encoding.UTF8.GetString(Convert.FromBase64String(data)) : PathOf(node, key) is { } file ? File.ReadAllText(file) : null;

        try
        {
            var contextName = Text(root, "current-context") ?? throw new KubeConfigException($"kubeconfig {path} has no current-context");
            var context = Entry(root, "contexts", "context", contextName)
                ?? throw new KubeConfigException($"kubeconfig {path}: context {contextName} not found");
            var clusterName = Text(context, "cluster") ?? throw new KubeConfigException($"kubeconfig {path}: context {contextName} names no cluster");
            var cluster = Entry(root, "clusters", "cluster", clusterName)
                ?? throw new KubeConfigException($"kubeconfig {path}: cluster {clusterName} not found");
            var user = Text(context, "user") is { } userName
                ? Entry(root, "users", "user", userName) ?? throw new KubeConfigException($"kubeconfig {path}: user {userName} not found")
                : new YamlMappingNode();
            var certificate = DataOf(user, "client-certificate");
            var key = DataOf(user, "client-key");
            return new KubeConnection
            {
                Host = Text(cluster, "server")?.TrimEnd('/') ?? throw new KubeConfigException($"kubeconfig {path}: cluster {clusterName} has no server"),
                CurrentContext = contextName,
                Namespace = Text(context, "namespace"),
                CaCertificates = DataOf(cluster, "certificate-authority") is { } ca ? Certificates(ca) : null,
                SkipTlsVerify = Text(cluster, "insecure-skip-tls-verify") is "true",
                TlsServerName = Text(cluster, "tls-server-name"),
                ClientCertificate = certificate is not null && key is not null ? X509Certificate2.CreateFromPem(certificate, key) : null,
                Username = Text(user, "username"),
                Password = Text(user, "password"),
                Token = Text(user, "token") is { } token ? new StaticToken(token)
                    : PathOf(user, "tokenFile") is { } tokenFile ? new TokenFile(tokenFile, time)
                    : Child(user, "exec") is { } exec ? Exec(path, exec, time)
                    : null,
            };
        }
        catch (Exception e) when (Unreadable(e))
        {
            throw new KubeConfigException($"kubeconfig {path} could not be read: {e.Message}");
        }
    }

    private static ExecCredential Exec(string path, YamlMappingNode exec, TimeProvider time) => new(
        Text(exec, "command") ?? throw new KubeConfigException($"kubeconfig {path}: user.exec has no command"),
        [.. Sequence(exec, "args").Select(a => (a as YamlScalarNode)?.Value ?? "")],
        Sequence(exec, "env").OfType<YamlMappingNode>().ToDictionary(e => Text(e, "name") ?? "", e => Text(e, "value") ?? ""),
        Text(exec, "apiVersion") ?? "client.authentication.k8s.io/v1",
        time);

    private static X509Certificate2Collection Certificates(string pem)
    {
        var certificates = new X509Certificate2Collection();
        certificates.ImportFromPem(pem);
        return certificates;
    }

    private static YamlMappingNode Read(string path)
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

        return yaml.Documents.Count == 1 && yaml.Documents[0].RootNode is YamlMappingNode map
            ? map
            : throw new KubeConfigException($"kubeconfig {path}: expected one YAML document holding a mapping");
    }

    /// <summary>The KEY mapping of the entry named <paramref name="name"/> in a list of {name, KEY: {...}}, as kubeconfig keeps clusters, users and contexts.</summary>
    private static YamlMappingNode? Entry(YamlMappingNode root, string list, string key, string name) =>
        Sequence(root, list).OfType<YamlMappingNode>().Where(e => Text(e, "name") == name).Select(e => Child(e, key) ?? new YamlMappingNode()).FirstOrDefault();

    private static YamlMappingNode? Child(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) ? child as YamlMappingNode : null;

    private static string? Text(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) && child is YamlScalarNode { Value: { Length: > 0 } value } ? value : null;

    private static IList<YamlNode> Sequence(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) && child is YamlSequenceNode sequence ? sequence.Children : [];
}
