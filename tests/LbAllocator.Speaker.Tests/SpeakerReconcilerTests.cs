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
/// The whole speaker loop (caches, lease, election, plan, effects, status writer) of one node against the
/// API server double, through a handler that can make requests hang as a stuck API server does.
/// </summary>
public class SpeakerReconcilerTests
{
    private const string Ns = "lballocator-system";

    private static readonly ResourceType Nodes = ResourceType.Find("", "v1", "nodes")!;
    private static readonly ResourceType Services = ResourceType.Find("", "v1", "services")!;
    private static readonly ResourceType Slices = ResourceType.Find("discovery.k8s.io", "v1", "endpointslices")!;
    private static readonly ResourceType Pools = ResourceType.Find("lballocator.io", "v1alpha1", "ipaddresspools")!;
    private static readonly ResourceType Advertisements = ResourceType.Find("lballocator.io", "v1alpha1", "l2advertisements")!;
    private static readonly ResourceType Leases = ResourceType.Find("coordination.k8s.io", "v1", "leases")!;
    private static readonly ResourceType Events = ResourceType.Find("", "v1", "events")!;

    [Fact]
    public async Task A_node_whose_api_hangs_and_that_hears_no_peer_stops_answering_within_its_lease_though_status_and_event_writes_hang_too()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        Seed(server.Store, "all", "{}");
        AddMember(server.Store, "node-b"); // a member never heard on the LAN: judged by its lease, and this node by its own
        AddService(server.Store, "web", "192.0.2.10", "main");
        var gate = new HangingGate
        {
            // ServiceL2Status and event writes hang from the start, as in the issue; everything else works.
            Hang = request => request.Method != HttpMethod.Get
                && (request.RequestUri!.AbsolutePath.Contains("/servicel2statuses", StringComparison.Ordinal) || request.RequestUri.AbsolutePath.Contains("/events", StringComparison.Ordinal)),
        };
        await using var speaker = SpeakerRun.Start(server, gate);
        await Eventually(() => speaker.Answers("192.0.2.10"), "the address is answered for, though its status write hangs");
        await Eventually(() => gate.Hanging > 0, "a status or event write is hanging");

        // Now the API server hangs altogether and no peer is heard on the LAN (heartbeats filtered, or this node
        // cut off): it must stop answering when its own lease runs out (before another node's speaker can count
        // it dead), not when some API call gives up (the client's own timeout is 100 s).
        var frozen = Stopwatch.StartNew();
        var fenceDue = speaker.Lease.UntilUnhealthy;
        gate.Hang = _ => true;
        await Eventually(() => speaker.Announcer.Owned.Count == 0, "answering stops");
        // The slack is for a machine busy enough to delay timers, not for any API call.
        Assert.True(frozen.Elapsed < fenceDue + TimeSpan.FromSeconds(1.5), $"stopped answering {frozen.Elapsed} after the freeze; the lease ran out after {fenceDue}");
        // The pass that stopped answering reports readiness after its effects: wait for it, not for a new judgement.
        const string Fenced = "FAIL lease: lease lballocator-speaker-node-a not renewed within 3s and no peer heard on the LAN: not answering";
        await Eventually(() => speaker.Readiness.Contains(Fenced, StringComparison.Ordinal), "readiness says why");
        Assert.Contains(Fenced, speaker.Readiness, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_node_whose_api_hangs_keeps_answering_while_it_hears_its_peers_on_the_lan()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        SeedWithPeer(server.Store);
        var gate = new HangingGate();
        await using var speaker = SpeakerRun.Start(server, gate);
        using var peer = HeartbeatsOfPeer(speaker);
        await Eventually(() => speaker.Answers("192.0.2.10"), "the address is answered for");

        var fenceDue = speaker.Lease.UntilUnhealthy;
        gate.Hang = _ => true;
        await Eventually(() => !speaker.Lease.Healthy, "the lease is no longer fresh");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.True(speaker.Answers("192.0.2.10"), "the API being away must not silence the data plane");
        Assert.Contains("ok lease: lease lballocator-speaker-node-a not renewed within 3s; answering while peers are heard on the LAN (1 now)", speaker.Readiness, StringComparison.Ordinal);
        Assert.True(speaker.Announcer.Sent.Count > 10, "heartbeats keep going out");
    }

    [Fact]
    public async Task A_node_that_keeps_hearing_its_peer_makes_no_pass_while_nothing_changes()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        SeedWithPeer(server.Store);
        await using var speaker = SpeakerRun.Start(server);
        using var peer = HeartbeatsOfPeer(speaker);
        await Eventually(() => speaker.Answers("192.0.2.10"), "the address is answered for");
        await Task.Delay(TimeSpan.FromSeconds(4)); // node-b's lease (never renewed here) expires meanwhile: a change, and a pass

        // Each heartbeat pushes node-b's expiry on the LAN further out, each renewal our lease's: a timer set for
        // either finds nothing changed (it made a pass every dead interval, 0.4 s, before).
        var passes = speaker.Announcer.Listens;
        await Task.Delay(TimeSpan.FromSeconds(3));
        // Slack for one heartbeat late on a busy machine (node-b dead, then back: two passes); 7 or more before.
        Assert.True(speaker.Announcer.Listens - passes <= 2, $"{speaker.Announcer.Listens - passes} passes in 3 s with nothing changed");
        Assert.True(speaker.Answers("192.0.2.10"), "still answered");
        Assert.Contains("ok lan: answering; 1 peers heard", speaker.Readiness, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_peer_that_goes_quiet_on_the_lan_is_dead_one_dead_interval_after_its_last_heartbeat()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        SeedWithPeer(server.Store);
        await using var speaker = SpeakerRun.Start(server);
        var lastBeat = Stopwatch.StartNew();
        var peer = HeartbeatsOfPeer(speaker, heard: lastBeat.Restart);
        await Eventually(() => speaker.Readiness.Contains("ok lan: answering; 1 peers heard", StringComparison.Ordinal), "node-b is heard");

        await peer.DisposeAsync(); // no callback runs after this
        var quiet = lastBeat.Elapsed;
        await Eventually(() => speaker.Readiness.Contains("ok lan: answering; 0 peers heard", StringComparison.Ordinal), "node-b is dead on the LAN");

        // Dead after the longer of its dead interval and ours (0.5 s), from its last heartbeat: the heartbeat thread
        // judges the LAN view when it is due, and no lease change comes in between (node-b's lease says alive until it
        // expires, but a member heard on the LAN is judged by the LAN). Slack for a busy machine, not for a beat.
        var dead = lastBeat.Elapsed;
        Assert.True(dead >= TimeSpan.FromMilliseconds(450), $"dead {dead} after its last heartbeat, before the dead interval");
        Assert.True(dead < TimeSpan.FromMilliseconds(900), $"dead only {dead} after its last heartbeat (quiet since {quiet})");
    }

    [Fact]
    public async Task A_node_whose_capture_cannot_open_stands_down_says_why_and_rejoins_when_it_can()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        Seed(server.Store, "all", "{}");
        AddService(server.Store, "web", "192.0.2.10", "main");
        await using var speaker = SpeakerRun.Start(server);
        await Eventually(() => speaker.Answers("192.0.2.10"), "the address is answered for");

        await Eventually(() => LeaseSaysCannotAnswer(server.Store, "node-a") is null, "the lease no longer says the node cannot answer once a capture is open");

        speaker.Announcer.Broken["eth0"] = "cannot capture: permission denied";
        speaker.Announcer.Trouble();
        await Eventually(() => !speaker.Answers("192.0.2.10"), "a node that cannot answer gives its addresses up");
        Assert.Contains("FAIL lan: cannot answer, not standing for election: eth0: cannot capture: permission denied", speaker.Readiness, StringComparison.Ordinal);
        await Eventually(() => server.Store.List(Events, null, _ => true).Items.Any(e => (string?)e["reason"] == "CannotAnswer" && (string?)e["involvedObject"]?["kind"] == "Node"), "a Warning event on the Node says why");
        // Peers that never hear it on the LAN judge it by its lease: the lease says it cannot answer, and why.
        await Eventually(() => LeaseSaysCannotAnswer(server.Store, "node-a") == "eth0: cannot capture: permission denied", "the lease says why the node cannot answer");

        speaker.Announcer.Broken.Clear();
        await Eventually(() => speaker.Answers("192.0.2.10"), "it takes part again once it can (after hearing the LAN for a dead interval)");
        Assert.Contains("ok lan: answering", speaker.Readiness, StringComparison.Ordinal);
        await Eventually(() => LeaseSaysCannotAnswer(server.Store, "node-a") is null, "the lease no longer says it cannot answer");
    }

    [Fact]
    public async Task A_member_never_heard_on_the_lan_whose_lease_says_it_cannot_answer_wins_nothing()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        Seed(server.Store, "all", "{}");
        server.Store.Create(Nodes, null, Json("""{"metadata": {"name": "node-b"}}"""));
        AddMember(server.Store, "node-b", cannotAnswer: "eth0: cannot capture (the speaker needs the NET_RAW capability)");
        var ips = Enumerable.Range(10, 8).Select(i => $"192.0.2.{i}").ToList();
        foreach (var ip in ips)
        {
            AddService(server.Store, $"web{ip.Split('.')[^1]}", ip, "main");
        }

        // node-b's speaker runs and renews (it reaches the API server), but no capture opens: it is never heard.
        using var renewals = new Timer(_ => RenewMember(server.Store, "node-b"), null, 0, 300);
        await using var speaker = SpeakerRun.Start(server);
        await Eventually(() => ips.All(speaker.Answers), "every address is answered here: node-b is no candidate, though its lease is renewed");

        // Its lease says it can answer: alive by its lease, it takes what it wins (and this node lets go).
        SetMemberCannotAnswer(server.Store, "node-b", null);
        await Eventually(() => ips.Count(speaker.Answers) is > 0 and < 8, "node-b wins some of the addresses again");

        SetMemberCannotAnswer(server.Store, "node-b", "eth0: not found");
        await Eventually(() => ips.All(speaker.Answers), "node-b stands down again: every address is answered here");
    }

    [Fact]
    public async Task The_preferred_node_answers_everything_relabelling_moves_it_and_the_owned_count_follows()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        Seed(server.Store, "prefer-edge", """{"preferredNodeSelectors": [{"matchLabels": {"role": "edge"}}]}""");
        SetRole(server.Store, "node-a", "edge");
        server.Store.Create(Nodes, null, Json("""{"metadata": {"name": "node-b"}}"""));
        AddMember(server.Store, "node-b");
        var ips = Enumerable.Range(10, 8).Select(i => $"192.0.2.{i}").ToList();
        foreach (var ip in ips)
        {
            AddService(server.Store, $"web{ip.Split('.')[^1]}", ip, "main");
        }

        // node-b's speaker is alive by its renewals; without the preference it would win about half.
        using var renewals = new Timer(_ => RenewMember(server.Store, "node-b"), null, 0, 300);
        await using var speaker = SpeakerRun.Start(server);
        await Eventually(() => ips.All(speaker.Answers) && speaker.Owned("ipv4") == 8, "node-a, the edge node, answers every address and counts 8 owned");
        Assert.Equal(0, speaker.Owned("ipv6"));

        // The label moves to node-b: every address goes there, none stays here.
        SetRole(server.Store, "node-a", null);
        SetRole(server.Store, "node-b", "edge");
        await Eventually(() => !ips.Any(speaker.Answers) && speaker.Owned("ipv4") == 0, "node-b, now the edge node, takes every address");

        // And back: node-a is preferred again and takes them back.
        SetRole(server.Store, "node-b", null);
        SetRole(server.Store, "node-a", "edge");
        await Eventually(() => ips.All(speaker.Answers) && speaker.Owned("ipv4") == 8, "node-a, the edge node again, takes every address back");
    }

    [Fact]
    public async Task A_pool_deleted_while_an_advertisement_lists_it_with_another_silences_only_its_own_addresses()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        Seed(server.Store, "both", """{"ipAddressPools": ["main", "other"]}""");
        server.Store.Create(Pools, Ns, Json("""{"metadata": {"name": "other"}, "spec": {"addresses": ["198.51.100.0/24"]}}"""));
        AddService(server.Store, "web", "192.0.2.10", "main");
        AddService(server.Store, "db", "198.51.100.10", "other");
        await using var speaker = SpeakerRun.Start(server);
        await Eventually(() => speaker.Answers("192.0.2.10") && speaker.Answers("198.51.100.10"), "both pools' addresses are answered");

        server.Store.Delete(Pools, Ns, "other");
        await Eventually(() => !speaker.Answers("198.51.100.10"), "the deleted pool's address is given up");
        Assert.True(speaker.Answers("192.0.2.10"), "the other pool's address is still answered");
    }

    [Fact]
    public async Task An_address_outside_every_covered_pool_is_never_answered_whatever_the_service_status_says()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        Seed(server.Store, "main-only", """{"ipAddressPools": ["main"]}""");
        server.Store.Create(Pools, Ns, Json("""{"metadata": {"name": "uncovered"}, "spec": {"addresses": ["198.51.100.0/24"]}}"""));
        AddService(server.Store, "stray", "203.0.113.5", "main"); // in no pool
        AddService(server.Store, "elsewhere", "198.51.100.5", "main"); // in another pool than its own
        AddService(server.Store, "uncovered", "198.51.100.6", "uncovered"); // in a pool no advertisement covers
        AddService(server.Store, "web", "192.0.2.10", "main");
        await using var speaker = SpeakerRun.Start(server);

        await Eventually(() => speaker.Answers("192.0.2.10"), "the valid address is answered");
        Assert.Equal([Ip.Parse("192.0.2.10")], speaker.Announcer.Owned.Keys);
    }

    [Fact]
    public async Task With_the_local_policy_a_serving_terminating_endpoint_keeps_the_address_while_none_is_ready()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        Seed(server.Store, "all", "{}");
        AddService(server.Store, "web", "192.0.2.10", "main", local: true);
        var slice = server.Store.Create(Slices, "default", Json("""
            {"metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}}, "addressType": "IPv4",
             "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "node-a", "conditions": {"ready": false, "serving": false, "terminating": true}}]}
            """));
        await using var speaker = SpeakerRun.Start(server);
        await Eventually(() => speaker.Synced, "the speaker has made its first pass");
        Assert.False(speaker.Answers("192.0.2.10"), "no endpoint serves: nothing to announce");

        // The one replica is being replaced: the old pod still serves while terminating, the new one is not ready yet.
        slice["endpoints"] = JsonNode.Parse("""
            [{"addresses": ["10.0.0.1"], "nodeName": "node-a", "conditions": {"ready": false, "serving": true, "terminating": true}},
             {"addresses": ["10.0.0.2"], "nodeName": "node-b", "conditions": {"ready": false, "serving": false, "terminating": false}}]
            """);
        server.Store.Update(Slices, "default", "web-abc", slice, statusOnly: false);
        await Eventually(() => speaker.Answers("192.0.2.10"), "the serving terminating endpoint on this node is announced");
    }

    /// <summary>This node, a pool "main" (192.0.2.0/24) and one advertisement.</summary>
    private static void Seed(Store store, string advertisement, string spec)
    {
        store.Create(Nodes, null, Json("""{"metadata": {"name": "node-a"}}"""));
        store.Create(Pools, Ns, Json("""{"metadata": {"name": "main"}, "spec": {"addresses": ["192.0.2.0/24"]}}"""));
        var body = Json("""{"metadata": {}}""");
        body["metadata"]!["name"] = advertisement;
        body["spec"] = JsonNode.Parse(spec);
        store.Create(Advertisements, Ns, body);
    }

    /// <summary>Sets or removes a node's role label.</summary>
    private static void SetRole(Store store, string node, string? role) =>
        store.Patch(Nodes, null, node, n =>
        {
            var labels = (n["metadata"]!["labels"] ??= new JsonObject()).AsObject();
            labels.Remove("role");
            if (role is not null)
            {
                labels["role"] = role;
            }

            return n;
        }, statusOnly: false);

    /// <summary>
    /// Another speaker's lease (a member), on a node without a Node object unless the test adds one, so it never
    /// wins anything here; optionally saying it cannot answer.
    /// </summary>
    private static void AddMember(Store store, string node, string? cannotAnswer = null)
    {
        var lease = Json($$$"""
            {"metadata": {"name": "lballocator-speaker-{{{node}}}", "labels": {"{{{SpeakerLease.ComponentLabel}}}": "{{{SpeakerLease.ComponentValue}}}"}},
             "spec": {"holderIdentity": "{{{node}}}", "leaseDurationSeconds": 3}}
            """);
        if (cannotAnswer is not null)
        {
            lease["metadata"]!["annotations"] = new JsonObject { [SpeakerLease.CannotAnswerAnnotation] = cannotAnswer };
        }

        store.Create(Leases, Ns, lease);
    }

    /// <summary>A renewal of another speaker's lease, as its speaker makes every renew interval.</summary>
    private static void RenewMember(Store store, string node) =>
        store.Patch(Leases, Ns, SpeakerLease.NameFor(node), lease =>
        {
            lease["spec"]!["renewTime"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", System.Globalization.CultureInfo.InvariantCulture);
            return lease;
        }, statusOnly: false);

    private static void SetMemberCannotAnswer(Store store, string node, string? why) =>
        store.Patch(Leases, Ns, SpeakerLease.NameFor(node), lease =>
        {
            var annotations = (lease["metadata"]!["annotations"] ??= new JsonObject()).AsObject();
            annotations.Remove(SpeakerLease.CannotAnswerAnnotation);
            if (why is not null)
            {
                annotations[SpeakerLease.CannotAnswerAnnotation] = why;
            }

            return lease;
        }, statusOnly: false);

    private static string? LeaseSaysCannotAnswer(Store store, string node) =>
        store.Get(Leases, Ns, SpeakerLease.NameFor(node))?["metadata"]?["annotations"]?[SpeakerLease.CannotAnswerAnnotation]?.GetValue<string>();

    /// <summary>Everything advertised, a member node-b besides node-a, and one Service, web (192.0.2.10 from main).</summary>
    private static void SeedWithPeer(Store store)
    {
        Seed(store, "all", "{}");
        AddMember(store, "node-b");
        AddService(store, "web", "192.0.2.10", "main");
    }

    /// <summary>node-b's heartbeat heard every 100 ms (dead after 0.4 s by its own count), <paramref name="heard"/> called after each.</summary>
    private static Timer HeartbeatsOfPeer(SpeakerRun speaker, Action? heard = null) => new(_ =>
    {
        speaker.Announcer.Hear(new Heartbeat("node-b", 1, TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(400), Leaving: false));
        heard?.Invoke();
    }, null, 0, 100);

    /// <summary>A LoadBalancer Service whose status carries <paramref name="ip"/>, as if the controller had given it from <paramref name="pool"/>.</summary>
    private static void AddService(Store store, string name, string ip, string pool, bool local = false)
    {
        var service = store.Create(Services, "default", Json($$$"""
            {"metadata": {"name": "{{{name}}}", "annotations": {"{{{ServiceAnnotations.AllocatedFromPool}}}": "{{{pool}}}"}},
             "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "{{{(local ? "Local" : "Cluster")}}}", "ports": [{"port": 80, "protocol": "TCP"}]}}
            """));
        service["status"] = JsonNode.Parse($$$"""{"loadBalancer": {"ingress": [{"ip": "{{{ip}}}"}]}}""");
        store.Update(Services, "default", name, service, statusOnly: true);
    }

    private static JsonObject Json(string text) => JsonNode.Parse(text)!.AsObject();

    private static async Task Eventually(Func<bool> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition() && deadline.Elapsed < TimeSpan.FromSeconds(20))
        {
            await Task.Delay(10);
        }

        Assert.True(condition(), what);
    }

    /// <summary>The speaker of node-a (lease 3 s, renewals every 1 s, one interface eth0), running until disposed.</summary>
    private sealed class SpeakerRun : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Health _health;
        private readonly SpeakerReconciler _reconciler;
        private readonly Task _leasing;
        private readonly Task _reconciling;
        private readonly CollectorRegistry _registry;

        private SpeakerRun(TestApiServer.TestApiServer server, HangingGate gate)
        {
            var client = server.CreateApi(gate);
            var options = new SpeakerOptions { NodeName = "node-a", Namespace = Ns };
            var time = TimeProvider.System;
            _health = new Health(time);
            _registry = Metrics.NewCustomRegistry();
            var metrics = new SpeakerMetrics(Metrics.WithCustomRegistry(_registry), _registry, Announcer);
            Lease = new SpeakerLease(client, options, metrics, _health, time, NullLogger<SpeakerLease>.Instance);
            NetworkInterfaceInfo[] interfaces = [new("eth0", Up: true, Broadcast: true, Loopback: false, NoArp: false, Enslaved: false, Ethernet: true)];
            _reconciler = new SpeakerReconciler(client, options, Lease, Announcer, metrics, _health, time, NullLoggerFactory.Instance, () => interfaces);
            _leasing = Lease.RunAsync(_stop.Token);
            _reconciling = _reconciler.RunAsync(_stop.Token);
        }

        public RecordingAnnouncer Announcer { get; } = new();

        public SpeakerLease Lease { get; }

        /// <summary>Caches synced and the lease renewed: passes now decide with everything known.</summary>
        public bool Synced => _health.Readiness().Ok;

        public string Readiness => _health.Readiness().Text;

        public static SpeakerRun Start(TestApiServer.TestApiServer server, HangingGate? gate = null) => new(server, gate ?? new HangingGate());

        public bool Answers(string ip) => Announcer.Owned.ContainsKey(Ip.Parse(ip));

        /// <summary>This node's lballocator_speaker_owned_addresses of a family, as a scrape shows it (-1: no series).</summary>
        public double Owned(string family)
        {
            using var text = new MemoryStream();
            _registry.CollectAndExportAsTextAsync(text).GetAwaiter().GetResult();
            var series = PrometheusText.Parse(System.Text.Encoding.UTF8.GetString(text.ToArray()));
            return series.GetValueOrDefault($"lballocator_speaker_owned_addresses{{node=\"node-a\",family=\"{family}\"}}", -1);
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _reconciling;
            try
            {
                await _leasing;
            }
            catch (OperationCanceledException)
            {
                // A renewal in flight ends this way on shutdown.
            }

            _reconciler.Dispose();
            _stop.Dispose();
        }
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
