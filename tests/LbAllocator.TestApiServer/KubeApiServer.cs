using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Client;

namespace LbAllocator.TestApiServer;

/// <summary>
/// A real kube-apiserver (the binary in the directory named by <c>KUBEBUILDER_ASSETS</c>, envtest's convention)
/// with its own etcd (Debian's <c>etcd-server</c>, or an <c>etcd</c> in the same directory), both on ports of
/// their own, RBAC as the authorizer, a static admin token and ServiceAccount token signing. Everything lives
/// in a temporary directory that is removed, with both processes, on dispose. Kubernetes itself judges what
/// runs against it: CRD schemas and their CEL cost, RBAC, the status subresource, printer columns, patches.
/// </summary>
public sealed class KubeApiServer : IAsyncDisposable
{
    public const string AssetsVariable = "KUBEBUILDER_ASSETS";
    public const string AdminToken = "lballocator-test-admin";

    private readonly string _dir;
    private readonly StringBuilder _log = new();
    private Process? _etcd;
    private Process? _apiServer;
    private string[] _apiServerArgs = [];

    private KubeApiServer(string dir, Uri url)
    {
        _dir = dir;
        Url = url;
        AdminKubeconfig = WriteKubeconfig("admin", AdminToken);
    }

    /// <summary>https://ADDRESS:PORT of the server (a self-signed certificate: clients skip verification).</summary>
    public Uri Url { get; }

    /// <summary>The server's certificate and the CA that signed it (PEM), as a pod's service account ca.crt holds it.</summary>
    public string CertificateFile => Path.Combine(_dir, "certs", "apiserver.crt");

    /// <summary>A kubeconfig file for the admin (group system:masters).</summary>
    public string AdminKubeconfig { get; }

    /// <summary>Why the real server cannot start here (and how to fix that), or null when it can.</summary>
    public static string? Missing
    {
        get
        {
            var apiServer = ApiServerBinary;
            if (apiServer is null)
            {
                return $"real-API tests skipped: set {AssetsVariable} to a directory holding kube-apiserver (v1.28 or later; `.ci/run` uses ../shared/kube, envtest's `setup-envtest use` downloads one)";
            }

            return EtcdBinary is null ? $"real-API tests skipped: no etcd on the PATH or in {AssetsVariable} (apt-get install etcd-server)" : null;
        }
    }

    private static string? ApiServerBinary => Assets is { } dir && File.Exists(Path.Combine(dir, "kube-apiserver"))
        ? Path.Combine(dir, "kube-apiserver")
        : null;

    /// <summary>
    /// The directory <c>KUBEBUILDER_ASSETS</c> names, absolute: a relative one is taken from the repository root (where
    /// the README's commands run), not from the directory a test happens to run in.
    /// </summary>
    private static string? Assets => Environment.GetEnvironmentVariable(AssetsVariable) is { Length: > 0 } dir
        ? Path.GetFullPath(dir, InstallManifests.RepoRoot)
        : null;

    private static string? EtcdBinary =>
        new[] { Assets ?? "" }
            .Concat((Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
            .Where(d => d.Length > 0)
            .Select(d => Path.Combine(d, "etcd"))
            .FirstOrDefault(File.Exists);

    /// <summary>
    /// Starts etcd and kube-apiserver and waits until /readyz answers (up to 90 s on a busy machine).
    /// <paramref name="bindAddress"/> is 127.0.0.1 unless processes in a test's network namespaces must reach it.
    /// With <paramref name="audit"/>, every request is logged at Metadata level (see <see cref="AuditEvents"/>).
    /// </summary>
    public static async Task<KubeApiServer> StartAsync(string bindAddress = "127.0.0.1", bool audit = false, CancellationToken cancellationToken = default)
    {
        if (Missing is { } why)
        {
            throw new InvalidOperationException(why);
        }

        // etcd's data on tmpfs where there is one: fsyncs on a slow disk are what make a lone API server slow.
        var root = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        RemoveLeftovers(root);
        var dir = Directory.CreateDirectory(Path.Combine(root, $"lballocator-kube-{Environment.ProcessId}-{Guid.NewGuid():N}")).FullName;
        var etcdPort = FreePort();
        var peerPort = FreePort();
        var apiPort = FreePort();
        var server = new KubeApiServer(dir, new Uri($"https://{(bindAddress.Contains(':', StringComparison.Ordinal) ? $"[{bindAddress}]" : bindAddress)}:{apiPort}"));
        try
        {
            server.WriteCredentials();
            var auditArgs = audit ? server.WriteAuditPolicy() : [];
            server._etcd = server.Start(EtcdBinary!, "etcd",
                "--data-dir", Path.Combine(dir, "etcd"),
                "--listen-client-urls", $"http://127.0.0.1:{etcdPort}", "--advertise-client-urls", $"http://127.0.0.1:{etcdPort}",
                "--listen-peer-urls", $"http://127.0.0.1:{peerPort}", "--initial-advertise-peer-urls", $"http://127.0.0.1:{peerPort}",
                "--initial-cluster", $"default=http://127.0.0.1:{peerPort}", "--log-level", "warn");
            server._apiServerArgs = [
                $"--etcd-servers=http://127.0.0.1:{etcdPort}",
                $"--bind-address={bindAddress}", $"--secure-port={apiPort}", $"--advertise-address={bindAddress}",
                $"--cert-dir={Path.Combine(dir, "certs")}",
                $"--token-auth-file={Path.Combine(dir, "tokens.csv")}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                $"--service-account-key-file={Path.Combine(dir, "sa.pub")}",
                $"--service-account-signing-key-file={Path.Combine(dir, "sa.key")}",
                "--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112",
                "--endpoint-reconciler-type=none",
                .. auditArgs];
            server._apiServer = server.Start(ApiServerBinary!, "kube-apiserver", server._apiServerArgs);
            await server.WaitReadyAsync(TimeSpan.FromSeconds(90), cancellationToken);
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>A client for the admin, or for the given bearer token (a ServiceAccount's, say).</summary>
    public k8s.Kubernetes CreateClient(string token = AdminToken) =>
        new(new KubernetesClientConfiguration { Host = Url.ToString(), AccessToken = token, SkipTlsVerify = true });

    /// <summary>The components' client (<see cref="KubeApi"/>) for the admin, or for the given bearer token.</summary>
    public KubeApi CreateApi(string token = AdminToken) =>
        new(new KubeConnection { Host = Url.ToString(), Token = new StaticToken(token), SkipTlsVerify = true });

    /// <summary>Writes a kubeconfig for the token into the server's directory and returns its path.</summary>
    public string WriteKubeconfig(string user, string token, Uri? url = null)
    {
        var path = Path.Combine(_dir, $"{user}.kubeconfig");
        File.WriteAllText(path, $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: test
              cluster: {"{"}server: "{url ?? Url}", insecure-skip-tls-verify: true{"}"}
            users:
            - name: {user}
              user: {"{"}token: "{token}"{"}"}
            contexts:
            - name: test
              context: {"{"}cluster: test, user: {user}{"}"}
            current-context: test
            """);
        return path;
    }

    /// <summary>A token for a ServiceAccount (TokenRequest; the account must exist), valid for an hour.</summary>
    public async Task<string> ServiceAccountTokenAsync(string ns, string account)
    {
        using var client = CreateClient();
        var request = await client.CoreV1.CreateNamespacedServiceAccountTokenAsync(
            new Authenticationv1TokenRequest { Spec = new V1TokenRequestSpec { Audiences = ["https://kubernetes.default.svc"], ExpirationSeconds = 3600 } },
            account, ns);
        return request.Status.Token;
    }

    /// <summary>Runs kubectl as the admin (or with another kubeconfig); exit code, stdout and stderr.</summary>
    public async Task<(int Code, string Output, string Error)> KubectlAsync(string[] args, string? kubeconfig = null, string? stdin = null)
    {
        var start = new ProcessStartInfo("kubectl") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin is not null };
        start.ArgumentList.Add("--kubeconfig");
        start.ArgumentList.Add(kubeconfig ?? AdminKubeconfig);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("kubectl did not start");
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
            process.StandardInput.Close();
        }

        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output, await error);
    }

    /// <summary>Runs kubectl and fails with its stderr unless it exits 0; returns stdout.</summary>
    public async Task<string> KubectlMustAsync(params string[] args)
    {
        var (code, output, error) = await KubectlAsync(args);
        return code == 0 ? output : throw new InvalidOperationException($"kubectl {string.Join(' ', args)} exited {code}: {error}");
    }

    /// <summary>
    /// The requests the server has audited so far (start with audit: true), one per request: a watch logs a
    /// ResponseStarted and a ResponseComplete event, counted once.
    /// </summary>
    public IReadOnlyList<AuditEvent> AuditEvents()
    {
        var path = Path.Combine(_dir, "audit.log");
        if (!File.Exists(path))
        {
            return [];
        }

        // The server keeps writing: share the file, and skip a last line caught half written.
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        var events = new Dictionary<string, AuditEvent>();
        while (reader.ReadLine() is { } line)
        {
            if (AuditEvent.TryParse(line) is { } parsed)
            {
                events[parsed.AuditId] = parsed;
            }
        }

        return [.. events.Values];
    }

    /// <summary>
    /// Kills kube-apiserver (SIGKILL, as a crashed control-plane node) and starts it again on the same address with the
    /// same etcd and flags, after <paramref name="down"/>; returns once /readyz answers. Its watch cache starts afresh
    /// at etcd's current revision, so a watch from any older version gets 410 Gone; its metrics start from zero.
    /// </summary>
    public async Task RestartAsync(TimeSpan down = default, CancellationToken cancellationToken = default)
    {
        var old = _apiServer!;
        old.Kill(entireProcessTree: true);
        await old.WaitForExitAsync(cancellationToken);
        old.Dispose();
        if (down > TimeSpan.Zero)
        {
            await Task.Delay(down, cancellationToken);
        }

        _apiServer = Start(ApiServerBinary!, "kube-apiserver", _apiServerArgs);
        await WaitReadyAsync(TimeSpan.FromSeconds(90), cancellationToken);
    }

    /// <summary>The server's /metrics page (Prometheus text; <see cref="PrometheusText"/> reads it).</summary>
    public async Task<string> MetricsAsync(CancellationToken cancellationToken = default)
    {
        using var http = AdminHttp();
        return await http.GetStringAsync(new Uri(Url, "/metrics"), cancellationToken);
    }

    /// <summary>
    /// Requests the server has answered since it (re)started, by verb (LIST, WATCH, GET, CREATE, UPDATE, PATCH, DELETE,
    /// ...), over every code, from <c>apiserver_request_total</c>; only those on <paramref name="resources"/> when given
    /// (plural names, as "services").
    /// </summary>
    public async Task<IReadOnlyDictionary<string, double>> RequestsByVerbAsync(IReadOnlyCollection<string>? resources = null, CancellationToken cancellationToken = default) =>
        PrometheusText.Sum(await MetricsAsync(cancellationToken), "apiserver_request_total", "verb", labels => resources is null || resources.Contains(labels.GetValueOrDefault("resource", "")));

    /// <summary>
    /// The watches open on the server now, by resource (<c>apiserver_longrunning_requests</c>, verb WATCH), its own
    /// informers' included. A watch refused with 410 Gone is open for a moment too: a count that holds is the judge.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, double>> WatchesByResourceAsync(CancellationToken cancellationToken = default) =>
        PrometheusText.Sum(await MetricsAsync(cancellationToken), "apiserver_longrunning_requests", "resource", labels => labels.GetValueOrDefault("verb") == "WATCH");

    /// <summary>Stops kube-apiserver with SIGSTOP: it keeps its sockets but answers nothing (a hung control plane).</summary>
    public Task FreezeAsync() => SignalApiServerAsync("STOP");

    /// <summary>Lets a frozen kube-apiserver run again (SIGCONT).</summary>
    public Task ThawAsync() => SignalApiServerAsync("CONT");

    /// <summary>What etcd and kube-apiserver printed, for a failing test's message.</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        // The API server first, then its etcd.
        foreach (var process in new[] { _apiServer, _etcd }.OfType<Process>())
        {
            try
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }

            process.Dispose();
        }

        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // A file still held open by a dying process; the directory is temporary anyway.
        }
    }

    private void WriteCredentials()
    {
        File.WriteAllText(Path.Combine(_dir, "tokens.csv"), $"{AdminToken},admin,admin,system:masters\n");
        using var rsa = RSA.Create(2048);
        File.WriteAllText(Path.Combine(_dir, "sa.key"), rsa.ExportRSAPrivateKeyPem());
        File.WriteAllText(Path.Combine(_dir, "sa.pub"), rsa.ExportSubjectPublicKeyInfoPem());
    }

    private string[] WriteAuditPolicy()
    {
        // Metadata is enough to see who did what to which resource, and how it was answered.
        var policy = Path.Combine(_dir, "audit-policy.yaml");
        File.WriteAllText(policy, """
            apiVersion: audit.k8s.io/v1
            kind: Policy
            omitStages: [RequestReceived]
            rules:
              - level: Metadata
            """);
        return [$"--audit-policy-file={policy}", $"--audit-log-path={Path.Combine(_dir, "audit.log")}"];
    }

    private async Task SignalApiServerAsync(string signal)
    {
        var apiServer = _apiServer!;
        using var kill = Process.Start("kill", [$"-{signal}", apiServer.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync();
        if (kill.ExitCode != 0)
        {
            throw new InvalidOperationException($"kill -{signal} kube-apiserver exited {kill.ExitCode}");
        }
    }

    private Process Start(string file, string name, params string[] args)
    {
        var start = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _dir };
        var process = Process.Start(start) ?? throw new InvalidOperationException($"{name} did not start");
        void Append(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (_log)
            {
                // Keep the tail: a long-running server logs a lot, a failure needs the last lines.
                if (_log.Length > 200_000)
                {
                    _log.Remove(0, 100_000);
                }

                _log.Append(name).Append(": ").AppendLine(line);
            }
        }

        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>A plain client for the admin, for what KubeApi does not read (/readyz, /metrics).</summary>
    private static HttpClient AdminHttp()
    {
        var http = new HttpClient(new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, _, _, _) => true }) { Timeout = TimeSpan.FromSeconds(5) };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AdminToken);
        return http;
    }

    private async Task WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var http = AdminHttp();
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (new[] { _etcd, _apiServer }.OfType<Process>().FirstOrDefault(p => p.HasExited) is { } dead)
            {
                throw new InvalidOperationException($"{Path.GetFileName(dead.StartInfo.FileName)} exited with {dead.ExitCode} while starting:\n{Log}");
            }

            try
            {
                using var response = await http.GetAsync(new Uri(Url, "/readyz"), cancellationToken);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // Slow to answer while it starts.
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"kube-apiserver not ready after {timeout.TotalSeconds:F0} s:\n{Log}");
            }

            await Task.Delay(200, cancellationToken);
        }
    }

    /// <summary>
    /// Stops the servers of test runs that died without disposing theirs (a killed test host): their directory
    /// names the process that made them, and their processes name the directory on their command lines.
    /// </summary>
    private static void RemoveLeftovers(string root)
    {
        foreach (var dir in Directory.GetDirectories(root, "lballocator-kube-*"))
        {
            var owner = Path.GetFileName(dir).Split('-')[2];
            if (!int.TryParse(owner, out var pid) || Directory.Exists($"/proc/{pid}"))
            {
                continue;
            }

            foreach (var process in Directory.GetDirectories("/proc").Select(Path.GetFileName).Where(p => p!.All(char.IsAsciiDigit)))
            {
                try
                {
                    if (File.ReadAllText($"/proc/{process}/cmdline").Contains(dir, StringComparison.Ordinal))
                    {
                        using var leftover = Process.GetProcessById(int.Parse(process!, System.Globalization.CultureInfo.InvariantCulture));
                        leftover.Kill();
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
                {
                    // Gone meanwhile.
                }
            }

            Directory.Delete(dir, recursive: true);
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
