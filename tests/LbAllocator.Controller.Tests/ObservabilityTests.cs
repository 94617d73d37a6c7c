using System.Net;
using LbAllocator.Hosting;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace LbAllocator.Controller.Tests;

/// <summary>The controller process as deployed (ControllerHost) against the real server: /metrics, /healthz and /readyz over HTTP.</summary>
[Collection(RealClusterCollection.Name)]
public sealed class ObservabilityTests(RealCluster cluster) : IAsyncLifetime
{
    private ControllerFixture _f = null!;

    public async Task InitializeAsync() => _f = await ControllerFixture.StartAsync(cluster);

    public async Task DisposeAsync() => await _f.DisposeAsync();

    [RealApiFact]
    public async Task Metrics_health_and_readiness_report_what_the_controller_does()
    {
        await _f.CreatePoolAsync("main", "192.0.2.0/30", "2001:db8::/126");
        await _f.CreatePoolAsync("tiny", "198.51.100.7");
        await using var process = await ControllerProcess.StartAsync(_f);
        var http = process.Http;

        await ControllerFixture.Eventually(async () => (await http.GetAsync("/readyz")).StatusCode == HttpStatusCode.OK, "/readyz says ready once the caches are synced");
        Assert.Equal("ok caches: synced\n", await http.GetStringAsync("/readyz"));
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);

        await _f.CreateServiceAsync("web");
        await _f.CreateServiceAsync("api", annotations: new() { [Core.ServiceAnnotations.AddressPool] = "tiny" });
        await _f.CreateServiceAsync("late", annotations: new() { [Core.ServiceAnnotations.AddressPool] = "tiny" });
        await _f.CreateServiceAsync("bad", annotations: new() { [Core.ServiceAnnotations.LoadBalancerIPs] = "192.0.2.999" });

        await ControllerFixture.Eventually(async () =>
        {
            var m = PrometheusText.Parse(await http.GetStringAsync("/metrics"));
            return m.GetValueOrDefault("lballocator_pool_addresses_in_use{pool=\"tiny\",family=\"IPv4\"}") == 1
                && m.GetValueOrDefault("lballocator_pool_addresses_in_use{pool=\"main\",family=\"IPv4\"}") == 1;
        }, "pool usage in the metrics");
        var metrics = PrometheusText.Parse(await http.GetStringAsync("/metrics"));
        Assert.Equal(4, metrics["lballocator_pool_addresses{pool=\"main\",family=\"IPv4\"}"]);
        Assert.Equal(4, metrics["lballocator_pool_addresses{pool=\"main\",family=\"IPv6\"}"]);
        Assert.Equal(0, metrics["lballocator_pool_addresses_in_use{pool=\"main\",family=\"IPv6\"}"]);
        Assert.Equal(1, metrics["lballocator_pool_addresses{pool=\"tiny\",family=\"IPv4\"}"]);
        Assert.Equal(1, metrics["lballocator_allocations_total{pool=\"main\"}"]);
        Assert.Equal(1, metrics["lballocator_allocations_total{pool=\"tiny\"}"]);
        Assert.True(metrics["lballocator_allocation_failures_total{reason=\"AllocationFailed\"}"] >= 1, "late waits for the full pool");
        Assert.True(metrics["lballocator_allocation_failures_total{reason=\"InvalidAnnotation\"}"] >= 1, "bad has a malformed annotation");
        Assert.True(metrics["lballocator_reconcile_duration_seconds_count"] >= 4);
        Assert.Equal(1, metrics["lballocator_controller_leader"]);
        Assert.True(metrics["lballocator_kubernetes_requests_total{method=\"PUT\",code=\"200\"}"] >= 2, "status writes are counted");
        Assert.True(metrics.ContainsKey("process_working_set_bytes"));
        // A real server answers without errors: none may be counted.
        Assert.DoesNotContain(metrics.Keys, k => k.StartsWith("lballocator_kubernetes_errors_total{", StringComparison.Ordinal));
    }
}

/// <summary>What the double can show and a real server cannot: every request's User-Agent, and 500s on demand.</summary>
public sealed class ObservabilityFaultTests : IAsyncLifetime
{
    private ControllerFixture _f = null!;

    public async Task InitializeAsync() => _f = await ControllerFixture.StartDoubleAsync();

    public async Task DisposeAsync() => await _f.DisposeAsync();

    [Fact]
    public async Task Requests_name_the_controller_and_500s_are_counted_as_errors()
    {
        await _f.CreatePoolAsync("main", "192.0.2.0/30");
        await using var process = await ControllerProcess.StartAsync(_f);
        await ControllerFixture.Eventually(async () => (await process.Http.GetAsync("/readyz")).StatusCode == HttpStatusCode.OK, "ready");
        await _f.CreateServiceAsync("web");
        await ControllerFixture.Eventually(async () => await _f.IngressAsync("web") is not null, "web is served");

        // The controller's requests name it (the test's own client does not).
        Assert.Contains(_f.Faults.Requests, r => r.UserAgent.StartsWith("lballocator-controller/", StringComparison.Ordinal));
        Assert.All(_f.Faults.Requests.Where(r => r.UserAgent.StartsWith("lballocator", StringComparison.Ordinal)),
            r => Assert.StartsWith("lballocator-controller/", r.UserAgent, StringComparison.Ordinal));

        // The API failing shows up as errors: watches dropped, and their re-lists get 500s for a while.
        _f.Faults.FailRequestsFor(TimeSpan.FromSeconds(2));
        _f.Faults.DropWatches();
        await ControllerFixture.Eventually(async () => PrometheusText.Parse(await process.Http.GetStringAsync("/metrics")).Keys.Any(k => k.StartsWith("lballocator_kubernetes_errors_total{", StringComparison.Ordinal) && k.Contains("code=\"500\"", StringComparison.Ordinal)),
            "500s counted as API errors");
    }
}

/// <summary>The controller host as `lballocator controller` builds it, against a fixture's API, with its status server's client.</summary>
internal sealed class ControllerProcess : IAsyncDisposable
{
    private readonly IHost _host;

    private ControllerProcess(IHost host)
    {
        _host = host;
        Http = new HttpClient { BaseAddress = host.Services.GetRequiredService<StatusServer>().Url };
    }

    public HttpClient Http { get; }

    public static async Task<ControllerProcess> StartAsync(ControllerFixture f)
    {
        var host = ControllerHost.Build(new Dictionary<string, string?>
        {
            ["Controller:Kubeconfig"] = f.Kubeconfig,
            ["Controller:Namespace"] = f.Ns,
            ["Controller:LeaderElection"] = "false",
            ["Status:Address"] = "127.0.0.1:0",
            ["Logging:LogLevel:Default"] = "Warning",
        });
        await host.StartAsync();
        return new ControllerProcess(host);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _host.StopAsync();
        _host.Dispose();
    }
}
