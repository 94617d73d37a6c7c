using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace LbAllocator.Kubernetes.Client;

/// <summary>
/// Where the API server is and how to prove who we are: read from a kubeconfig or the in-cluster service account by
/// <see cref="KubeClientConfiguration"/>, or made by a test for its own server.
/// </summary>
public sealed class KubeConnection
{
    public required string Host { get; init; }

    /// <summary>The context's namespace (kubeconfig) or the pod's (in cluster); null when neither says.</summary>
    public string? Namespace { get; init; }

    public string? CurrentContext { get; init; }

    /// <summary>The certificate authorities the server's certificate must chain to; null: the system's.</summary>
    public X509Certificate2Collection? CaCertificates { get; init; }

    public bool SkipTlsVerify { get; init; }

    /// <summary>The name the server's certificate is checked against, when not the host's.</summary>
    public string? TlsServerName { get; init; }

    public X509Certificate2? ClientCertificate { get; init; }

    public string? Username { get; init; }

    public string? Password { get; init; }

    /// <summary>A bearer token, as the kubeconfig gives it or read fresh from a file, or from a credential plugin.</summary>
    public IBearerToken? Token { get; init; }

    /// <summary>
    /// The connection under the client. After a network cut, connections may hang silently: TCP backs off its
    /// retransmissions (and a connection attempt its SYNs) and may not try again for a minute or more after the
    /// network heals. Pings every 5 s while requests are open find a dead HTTP/2 connection (the watches') within
    /// 10 s and close it; a connection attempt gives up after 5 s, so the next one starts afresh.
    /// </summary>
    internal HttpMessageHandler CreateHandler()
    {
        var sockets = new SocketsHttpHandler
        {
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
            KeepAlivePingDelay = TimeSpan.FromSeconds(5),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(5),
            ConnectTimeout = TimeSpan.FromSeconds(5),
        };
        var tls = sockets.SslOptions;
        if (ClientCertificate is not null)
        {
            tls.ClientCertificates = [ClientCertificate];
        }

        if (SkipTlsVerify)
        {
            // The kubeconfig asks for it (insecure-skip-tls-verify: true), as kubectl honours it.
#pragma warning disable CA5359
            tls.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
#pragma warning restore CA5359
        }
        else if (CaCertificates is { Count: > 0 } roots)
        {
            tls.RemoteCertificateValidationCallback = (_, certificate, _, errors) => ChainsTo(roots, certificate, errors);
        }

        return new Credentials(this) { InnerHandler = sockets };
    }

    /// <summary>The server's certificate is valid for its name and chains to one of the cluster's certificate authorities.</summary>
    private static bool ChainsTo(X509Certificate2Collection roots, X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch) || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
    }

    /// <summary>
    /// Puts the bearer token (fresh for each request) or the basic credentials on every request, and the TLS server name
    /// as its Host: the handler takes the name it sends in the TLS handshake and checks the certificate against from
    /// the Host header (kube-apiserver ignores the header itself).
    /// </summary>
    private sealed class Credentials(KubeConnection connection) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (connection.TlsServerName is { } serverName)
            {
                request.Headers.Host = serverName;
            }

            if (connection.Token is { } token)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", await token.GetAsync(cancellationToken));
            }
            else if (connection.Username is not null)
            {
                var pair = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{connection.Username}:{connection.Password}"));
                request.Headers.Authorization = new AuthenticationHeaderValue("Basic", pair);
            }

            return await base.SendAsync(request, cancellationToken);
        }
    }
}

public interface IBearerToken
{
    ValueTask<string> GetAsync(CancellationToken cancellationToken);
}

/// <summary>A token given once, as in a kubeconfig's user.token.</summary>
public sealed record StaticToken(string Value) : IBearerToken
{
    public ValueTask<string> GetAsync(CancellationToken cancellationToken) => ValueTask.FromResult(Value);
}

/// <summary>
/// A token read from a file and read again each minute: the service account token in a pod is rotated by the
/// kubelet (it expires after an hour by default), so a token read once would stop working.
/// </summary>
public sealed class TokenFile(string path, TimeProvider time) : IBearerToken
{
    private static readonly TimeSpan ReadEvery = TimeSpan.FromMinutes(1);

    private string? _token;
    private DateTimeOffset _readAt;

    public string Path { get; } = path;

    public async ValueTask<string> GetAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (_token is null || now - _readAt >= ReadEvery)
        {
            _token = (await File.ReadAllTextAsync(Path, cancellationToken)).Trim();
            _readAt = now;
        }

        return _token;
    }
}
