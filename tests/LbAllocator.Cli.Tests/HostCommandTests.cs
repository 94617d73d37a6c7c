using Microsoft.Extensions.DependencyInjection;

namespace LbAllocator.Cli.Tests;

/// <summary>The long-running verbs refuse bad options and kubeconfigs before starting anything.</summary>
public class HostCommandTests
{
    private const string Kubeconfig = """
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
        users: [{name: u, user: {token: t}}]
        contexts: [{name: x, context: {cluster: c, user: u}}]
        current-context: x
        """;

    [Theory]
    [InlineData("controller", "-n", "Bad_Namespace", "Namespace \"Bad_Namespace\" is not a valid namespace name")]
    [InlineData("speaker", "--node", "", "NodeName is required")]
    [InlineData("speaker", "--node", "Node_1", "NodeName \"Node_1\" is not a valid node name")]
    [InlineData("speaker", "--renew-interval", "11", "must be positive and at most half of LeaseDuration")]
    [InlineData("speaker", "--exclude-interfaces", "(", "ExcludeInterfaces is not a valid regular expression")]
    [InlineData("speaker", "--api-timeout", "0", "ApiTimeout (00:00:00) must be positive")]
    [InlineData("speaker", "--gratuitous-refresh-interval", "-1", "GratuitousRefreshInterval (-00:00:01) must be 0 (off) or at least 1 s")]
    [InlineData("speaker", "--gratuitous-refresh-interval", "0.5", "GratuitousRefreshInterval (00:00:00.5000000) must be 0 (off) or at least 1 s")]
    [InlineData("controller", "--status-address", "localhost:8080", "status address \"localhost:8080\" is not IP:port")]
    [InlineData("speaker", "--status-address", "0.0.0.0", "status address \"0.0.0.0\" is not IP:port")]
    [InlineData("controller", "--kube-api-burst", "0", "Burst (0) must be at least 1")]
    [InlineData("speaker", "--kube-api-qps", "-1", "Qps (-1) must be 0 (no limit) or a positive number of requests a second")]
    public void Bad_options_are_one_line_and_exit_2(string verb, string option, string value, string message)
    {
        using var dir = new ManifestDir();
        var kubeconfig = dir.Write("kubeconfig", Kubeconfig);
        string[] node = verb == "speaker" && option != "--node" ? ["--node", "node-1"] : [];
        var run = CliRun.Of([verb, "--kubeconfig", kubeconfig, option, value, .. node]);
        Assert.Equal(2, run.ExitCode);
        Assert.StartsWith($"lballocator {verb}: invalid options: ", run.Stderr, StringComparison.Ordinal);
        Assert.Contains(message, run.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("controller")]
    [InlineData("speaker")]
    public void A_missing_kubeconfig_exits_1(string verb)
    {
        string[] node = verb == "speaker" ? ["--node", "node-1"] : [];
        var run = CliRun.Of([verb, "--kubeconfig", "/nonexistent/kubeconfig", .. node]);
        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith($"lballocator {verb}: cannot load the cluster configuration", run.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("controller")]
    [InlineData("speaker")]
    public void A_status_port_in_use_exits_1(string verb)
    {
        using var dir = new ManifestDir();
        var kubeconfig = dir.Write("kubeconfig", Kubeconfig);
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var address = $"127.0.0.1:{((System.Net.IPEndPoint)taken.LocalEndpoint).Port}";
        string[] node = verb == "speaker" ? ["--node", "node-1"] : [];
        var run = CliRun.Of([verb, "--kubeconfig", kubeconfig, "--status-address", address, .. node]);
        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith($"lballocator {verb}: cannot serve the status endpoint (--status-address): ", run.Stderr, StringComparison.Ordinal);
    }

    /// <summary>Each component has its own client rate limit (sized to its bursts) unless one is given.</summary>
    [Theory]
    [InlineData("controller", null, null, 100.0, 1000)]
    [InlineData("speaker", null, null, 20.0, 50)]
    [InlineData("speaker", "7.5", "15", 7.5, 15)]
    public void The_client_rate_limit_is_the_components_own_unless_given(string component, string? qps, string? burst, double expectedQps, int expectedBurst)
    {
        using var dir = new ManifestDir();
        var settings = new Dictionary<string, string?>
        {
            ["Controller:Kubeconfig"] = dir.Write("kubeconfig", Kubeconfig),
            ["Speaker:Kubeconfig"] = dir.Write("kubeconfig", Kubeconfig),
            ["Speaker:NodeName"] = "node-1",
            ["Status:Address"] = "127.0.0.1:0",
            ["KubernetesClient:Qps"] = qps,
            ["KubernetesClient:Burst"] = burst,
        };

        using var host = component == "controller" ? Controller.ControllerHost.Build(settings) : Speaker.SpeakerHost.Build(settings);
        var limit = host.Services.GetRequiredService<Hosting.KubeClientOptions>();

        Assert.Equal((expectedQps, expectedBurst), (limit.Qps, limit.Burst));
    }
}
