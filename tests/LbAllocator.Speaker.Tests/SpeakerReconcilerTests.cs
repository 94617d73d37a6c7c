using System.Diagnostics;
using System.Text.Json.Nodes;
using k8s;
using LbAllocator.Core;
using LbAllocator.Hosting;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Logging.Abstractions;
using Prometheus;

namespace LbAllocator.Speaker.Tests;

/// <summary>
/// The whole speaker loop (caches, lease, election, plan, effects, status writer) against the API server
/// double, through a handler that can make requests hang as a stuck API server does.
/// </summary>
public class SpeakerReconcilerTests
{
    private const string Ns = "lballocator-system";
    private static readonly Ip Vip = Ip.Parse("192.0.2.10");

    [Fact]
    public async Task A_node_whose_api_hangs_stops_answering_within_its_lease_though_status_and_event_writes_hang_too()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        Seed(server.Store);
        var gate = new HangingGate();
        var client = new k8s.Kubernetes(new KubernetesClientConfiguration { Host = server.Url.ToString() }, gate);
        var options = new SpeakerOptions { NodeName = "node-a", Namespace = Ns };
        var time = TimeProvider.System;
        var health = new Health(time);
        var registry = Metrics.NewCustomRegistry();
        var announcer = new RecordingAnnouncer();
        var metrics = new SpeakerMetrics(Metrics.WithCustomRegistry(registry), registry, announcer);
        var lease = new SpeakerLease(client, options, metrics, health, time, NullLogger<SpeakerLease>.Instance);
        NetworkInterfaceInfo[] interfaces = [new("eth0", Up: true, Broadcast: true, Loopback: false, NoArp: false, Enslaved: false, Ethernet: true)];
        using var reconciler = new SpeakerReconciler(client, options, lease, announcer, metrics, health, time, NullLoggerFactory.Instance, () => interfaces);
        using var stop = new CancellationTokenSource();

        // ServiceL2Status and event writes hang from the start, as in the issue; everything else works.
        gate.Hang = request => request.Method != HttpMethod.Get
            && (request.RequestUri!.AbsolutePath.Contains("/servicel2statuses", StringComparison.Ordinal) || request.RequestUri.AbsolutePath.Contains("/events", StringComparison.Ordinal));
        var leasing = lease.RunAsync(stop.Token);
        var reconciling = reconciler.RunAsync(stop.Token);
        await Eventually(() => announcer.Owned.ContainsKey(Vip), "the address is answered for, though its status write hangs");
        await Eventually(() => gate.Hanging > 0, "a status or event write is hanging");

        // Now the API server hangs altogether: no renewal gets through, and this node must stop answering
        // when its own lease runs out (before another node's speaker can count it dead), not when some API
        // call gives up (the client's own timeout is 100 s).
        var frozen = Stopwatch.StartNew();
        var fenceDue = lease.UntilUnhealthy;
        gate.Hang = _ => true;
        await Eventually(() => announcer.Owned.Count == 0, "answering stops");
        // The slack is for a machine busy enough to delay timers, not for any API call.
        Assert.True(frozen.Elapsed < fenceDue + TimeSpan.FromSeconds(1.5), $"stopped answering {frozen.Elapsed} after the freeze; the lease ran out after {fenceDue}");

        await stop.CancelAsync();
        await reconciling;
        try
        {
            await leasing;
        }
        catch (OperationCanceledException)
        {
            // A renewal in flight ends this way on shutdown.
        }
    }

    private static void Seed(Store store)
    {
        Create(store, "", "v1", "nodes", null, """{"metadata": {"name": "node-a"}}""");
        Create(store, "lballocator.io", "v1alpha1", "ipaddresspools", Ns, """{"metadata": {"name": "main"}, "spec": {"addresses": ["192.0.2.0/24"]}}""");
        Create(store, "lballocator.io", "v1alpha1", "l2advertisements", Ns, """{"metadata": {"name": "all"}, "spec": {}}""");
        var service = Create(store, "", "v1", "services", "default", $$$"""
            {"metadata": {"name": "web", "annotations": {"{{{ServiceAnnotations.AllocatedFromPool}}}": "main"}},
             "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}}
            """);
        service["status"] = JsonNode.Parse("""{"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}""");
        store.Update(ResourceType.Find("", "v1", "services")!, "default", "web", service, statusOnly: true);
    }

    private static JsonObject Create(Store store, string group, string version, string plural, string? ns, string json) =>
        store.Create(ResourceType.Find(group, version, plural)!, ns, JsonNode.Parse(json)!.AsObject());

    private static async Task Eventually(Func<bool> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition() && deadline.Elapsed < TimeSpan.FromSeconds(20))
        {
            await Task.Delay(10);
        }

        Assert.True(condition(), what);
    }

    /// <summary>Requests <see cref="Hang"/> picks wait until cancelled; the others go to the server.</summary>
    private sealed class HangingGate : DelegatingHandler
    {
        private int _hanging;

        public HangingGate() => InnerHandler = new HttpClientHandler();

        public Func<HttpRequestMessage, bool> Hang { get; set; } = _ => false;

        public int Hanging => Volatile.Read(ref _hanging);

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            // Watches stay open either way: a stuck server keeps its streams open and silent.
            if (!Hang(request) || request.RequestUri!.Query.Contains("watch=true", StringComparison.Ordinal))
            {
                return await base.SendAsync(request, cancellationToken);
            }

            Interlocked.Increment(ref _hanging);
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
                throw new InvalidOperationException("unreachable");
            }
            finally
            {
                Interlocked.Decrement(ref _hanging);
            }
        }
    }
}
