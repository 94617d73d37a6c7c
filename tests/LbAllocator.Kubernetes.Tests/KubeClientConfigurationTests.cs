using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using k8s;
using LbAllocator.Kubernetes.Client;
using Xunit;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>Our kubeconfig reader (NativeAOT-safe) gives the client the configuration the client's own reader gives.</summary>
public sealed class KubeClientConfigurationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lballocator-kubeconfig-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string text)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public async Task Reads_what_the_client_reads()
    {
        // A CA certificate beside the file, named relative to it; the current context is the second one.
        using (var key = ECDsa.Create())
        {
            using var ca = new CertificateRequest("CN=lab-ca", key, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(1));
            File.WriteAllText(Path.Combine(_dir, "ca.crt"), ca.ExportCertificatePem());
        }

        var path = Write("config", """
            apiVersion: v1
            kind: Config
            clusters:
            - name: other
              cluster: {server: "https://198.51.100.9:6443", insecure-skip-tls-verify: true}
            - name: lab
              cluster:
                server: https://192.0.2.1:6443
                certificate-authority: ca.crt
                tls-server-name: api.lab.example
            users:
            - name: admin
              user:
                token: "abc.def"
            - name: robot
              user: {username: robot, password: "s3cret"}
            contexts:
            - name: first
              context: {cluster: other, user: robot}
            - name: second
              context:
                cluster: lab
                user: admin
                namespace: lballocator-system
            current-context: second
            """);

        var ours = KubeClientConfiguration.Load(path);
        var theirs = KubernetesClientConfiguration.BuildConfigFromConfigFile(path);

        Assert.Equal(theirs.Host, ours.Host);
        Assert.Equal("https://192.0.2.1:6443", ours.Host);
        Assert.Equal(theirs.Namespace, ours.Namespace);
        Assert.Equal("lballocator-system", ours.Namespace);
        Assert.Equal(theirs.AccessToken, await ours.Token!.GetAsync(CancellationToken.None));
        Assert.Equal("abc.def", await ours.Token!.GetAsync(CancellationToken.None));
        Assert.Equal(theirs.TlsServerName, ours.TlsServerName);
        Assert.Equal(theirs.SkipTlsVerify, ours.SkipTlsVerify);
        Assert.Equal(theirs.CurrentContext, ours.CurrentContext);
        Assert.Equal(theirs.SslCaCerts!.Select(c => c.Thumbprint), ours.CaCertificates!.Select(c => c.Thumbprint));
    }

    [Fact]
    public void Reads_basic_credentials_and_skipping_tls_verification()
    {
        var path = Write("config", """
            clusters:
            - name: c
              cluster: {server: "https://198.51.100.9:6443", insecure-skip-tls-verify: true}
            users:
            - name: u
              user: {username: robot, password: "s3cret"}
            contexts:
            - name: x
              context: {cluster: c, user: u}
            current-context: x
            """);

        var ours = KubeClientConfiguration.Load(path);

        Assert.True(ours.SkipTlsVerify);
        Assert.Equal(("robot", "s3cret"), (ours.Username, ours.Password));
        Assert.Equal(KubernetesClientConfiguration.BuildConfigFromConfigFile(path).Username, ours.Username);
    }

    [Fact]
    public void Malformed_yaml_is_an_error_naming_the_file_and_position()
    {
        var path = Write("config", "clusters:\n- name: c\n  cluster: {server: \"https://x\"\n");

        var e = Assert.Throws<KubeConfigException>(() => KubeClientConfiguration.Load(path));

        Assert.StartsWith($"kubeconfig {path}:", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_context_that_does_not_exist_is_an_error_naming_the_file()
    {
        var path = Write("config", "clusters: []\nusers: []\ncontexts: []\ncurrent-context: nowhere\n");

        var e = Assert.Throws<KubeConfigException>(() => KubeClientConfiguration.Load(path));

        Assert.Contains("nowhere", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Reads_a_client_certificate_with_its_key_inline_or_from_files()
    {
        using var key = ECDsa.Create();
        using var certificate = new CertificateRequest("CN=lballocator-speaker", key, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(1));
        var certificatePem = certificate.ExportCertificatePem();
        var keyPem = key.ExportPkcs8PrivateKeyPem();
        File.WriteAllText(Path.Combine(_dir, "client.crt"), certificatePem);
        File.WriteAllText(Path.Combine(_dir, "client.key"), keyPem);
        static string Base64(string pem) => Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(pem));

        foreach (var user in new[]
        {
            $"{{client-certificate-data: {Base64(certificatePem)}, client-key-data: {Base64(keyPem)}}}",
            "{client-certificate: client.crt, client-key: client.key}",
        })
        {
            var path = Write("config", $"clusters: [{{name: c, cluster: {{server: \"https://198.51.100.9:6443\"}}}}]\nusers: [{{name: u, user: {user}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n");

            var ours = KubeClientConfiguration.Load(path);

            Assert.Equal(certificate.Thumbprint, ours.ClientCertificate?.Thumbprint);
            Assert.True(ours.ClientCertificate!.HasPrivateKey);
        }
    }

    [Fact]
    public void An_unreadable_certificate_is_an_error_naming_the_file()
    {
        var path = Write("config", "clusters: [{name: c, cluster: {server: \"https://198.51.100.9:6443\", certificate-authority: missing-ca.crt}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n");

        var e = Assert.Throws<KubeConfigException>(() => KubeClientConfiguration.Load(path));

        Assert.StartsWith($"kubeconfig {path} could not be read:", e.Message, StringComparison.Ordinal);
        Assert.Contains("missing-ca.crt", e.Message, StringComparison.Ordinal);
    }
}
