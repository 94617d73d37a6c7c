using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Kubernetes.Watching;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Prometheus;

namespace LbAllocator.Speaker.Tests;

/// <summary>
/// The decision path against an API server whose every request hangs: the announcer changes at once,
/// whatever the status writer is stuck on; the writer's calls time out and are retried in the background.
/// </summary>
public sealed class SpeakerEffectsTests : IDisposable
{
    private static readonly Ip Address = Ip.Parse("192.0.2.10");
    private static readonly NetworkInterfaceInfo Eth0 = new("eth0", Up: true, Broadcast: true, Loopback: false, NoArp: false, Enslaved: false, Ethernet: true);
    private static readonly V1Service Web = new() { Metadata = new V1ObjectMeta { Name = "web", NamespaceProperty = "default" } };

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 26, 12, 0, 0, TimeSpan.Zero));
    private readonly HangingHandler _api = new();
    private readonly RecordingAnnouncer _announcer = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly SpeakerOptions _options = new() { NodeName = "node-a" };
    private readonly L2StatusWriter _writer;
    private readonly SpeakerEffects _effects;
    private readonly ElectionTable _election;
    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private readonly Task _writing;

    public SpeakerEffectsTests()
    {
        // The handler answers nothing and forwards nothing: no request leaves the process.
        var client = new KubeApi(new KubeConnection { Host = "http://127.0.0.1:9" }, _api);
        var statuses = new ResourceCache<V1Alpha1ServiceL2Status>(Sources.ServiceL2Statuses(client, _options.Namespace), NullLogger.Instance);
        _writer = new L2StatusWriter(client, _options, statuses, _time, NullLogger<L2StatusWriter>.Instance);
        _effects = new SpeakerEffects(
            _announcer, _writer, new SpeakerMetrics(Metrics.WithCustomRegistry(_registry), _registry, _announcer), _options, _time, NullLogger<SpeakerEffects>.Instance);
        var config = ConfigValidator.Validate([new PoolSpec("main", ["192.0.2.0/24"])], [new Core.L2AdvertisementSpec("all")]);
        _election = ElectionTable.Build(
            config.Pools,
            config.Advertisements,
            [new ElectionNode("node-a", new Dictionary<string, string>(), SpeakerAlive: true)],
            [new AnnouncedService("default/web", [Address], "main", new Dictionary<string, string>())]);
        _writing = _writer.RunAsync(_stop.Token);
    }

    [Fact]
    public async Task Ownership_changes_reach_the_announcer_at_once_while_every_api_call_hangs()
    {
        Apply();
        Assert.Equal([Address], _announcer.Owned.Keys);

        // The status write (and the nodeAssigned event) are now stuck in the API server.
        await Eventually(() => _api.InFlight(StatusPath) >= 1 && _api.InFlight(EventPath) >= 1);

        // This node's speaker is fenced: the next decision gives the address up, without waiting for anything.
        _election.SetNode(new ElectionNode("node-a", new Dictionary<string, string>(), SpeakerAlive: false));
        await Task.Run(() => Apply()).WaitAsync(TimeSpan.FromSeconds(5)); // throws if the decision waited on the API
        Assert.Empty(_announcer.Owned);
        Assert.True(_api.InFlight(StatusPath) >= 1, "the hung write is still pending");

        // The writer's own timeout ends the hung calls; the write is no longer wanted, so it is not retried.
        _time.Advance(_options.ApiTimeout);
        await Eventually(() => _api.InFlight(StatusPath) == 0 && _api.InFlight(EventPath) == 0);
        var sent = _api.Sent(StatusPath);
        for (var i = 0; i < 10; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(10);
        }

        Assert.Equal(sent, _api.Sent(StatusPath));
    }

    [Fact]
    public async Task A_status_write_that_times_out_is_retried()
    {
        Apply();
        await Eventually(() => _api.Sent(StatusPath) == 1);

        _time.Advance(_options.ApiTimeout);
        await Eventually(() =>
        {
            _time.Advance(TimeSpan.FromMilliseconds(100)); // the backoff before the retry
            return _api.Sent(StatusPath) >= 2;
        });
    }

    [Fact]
    public void A_service_never_announced_is_probed_first_and_an_address_another_host_claims_is_no_longer_answered()
    {
        var other = new MacAddress(0x02_00_00_00_00_99);
        Assert.Equal(TimeSpan.FromMilliseconds(300), Apply(statuses: []));
        Assert.Empty(_announcer.Owned);
        Assert.Equal([(Address, "eth0")], _announcer.Probes);
        Assert.Equal([Address], _announcer.Guarded);
        _time.Advance(AddressGuard.ProbeSpacing);
        Assert.Equal(2, _announcer.Probes.Count);

        _time.Advance(AddressGuard.ProbeWait);
        Assert.Null(Apply(statuses: []));
        Assert.Equal([Address], _announcer.Owned.Keys);
        Assert.Equal(2, _announcer.Probes.Count);

        // A claim while answering is checked with a probe; the same host answering it is a conflict.
        Assert.True(_effects.Claimed(Address, other));
        Apply(statuses: []);
        Assert.Equal([Address], _announcer.Owned.Keys);
        Assert.Equal(3, _announcer.Probes.Count);
        Assert.True(_effects.Claimed(Address, other));
        Assert.Equal(AddressGuard.FirstRetry, Apply(statuses: []));
        Assert.Empty(_announcer.Owned);
        Assert.Equal([Address], _announcer.Guarded); // still watched while held back
        Assert.Equal(1, Metrics.WithCustomRegistry(_registry).CreateCounter("lballocator_speaker_address_conflicts_total", "").Value);

        // Probed again after the backoff; nobody answers now, so it is answered again.
        _time.Advance(AddressGuard.FirstRetry); // the challenge's second probe goes out meanwhile
        Apply(statuses: []);
        Assert.Equal(5, _announcer.Probes.Count);
        _time.Advance(AddressGuard.ProbeSpacing + AddressGuard.ProbeWait);
        Apply(statuses: []);
        Assert.Equal([Address], _announcer.Owned.Keys);
    }

    [Fact]
    public async Task A_service_is_told_announced_only_once_its_first_probe_has_passed()
    {
        Apply(statuses: []);
        await Task.Delay(200);
        Assert.Empty(_announcer.Owned);
        Assert.Equal(0, _api.Sent(EventPath)); // held back by the probe: not announced yet, so not told

        _time.Advance(AddressGuard.ProbeSpacing + AddressGuard.ProbeWait);
        Apply(statuses: []);
        Assert.Equal([Address], _announcer.Owned.Keys);
        await Eventually(() => _api.Sent(EventPath) == 1);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _writing.Wait(TimeSpan.FromSeconds(5));
        _effects.Dispose();
        _writer.Dispose();
        _stop.Dispose();
    }

    private const string StatusPath = "servicel2statuses";
    private const string EventPath = "/events";

    /// <param name="statuses">The ServiceL2Statuses seen; by default one naming another node, so this is a takeover (not probed).</param>
    private TimeSpan? Apply(StatusView[]? statuses = null) =>
        _effects.Apply(
            SpeakerPlan.Make("node-a", _election, standing: true, janitor: false, statuses ?? [new StatusView("status", "default/web", "node-b")], [Eth0], new Regex("^lo$")),
            key => key == "default/web" ? Web : null,
            _stop.Token);

    private async Task Eventually(Func<bool> condition)
    {
        for (var i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition(), $"not reached; requests sent: {_api}");
    }

    /// <summary>Every request waits until it is cancelled; counts are per path fragment.</summary>
    private sealed class HangingHandler : DelegatingHandler
    {
        private readonly Lock _lock = new();
        private readonly List<string> _sent = [];
        private readonly List<string> _inFlight = [];

        public override string ToString()
        {
            lock (_lock)
            {
                return $"{string.Join(", ", _sent)}; in flight: {string.Join(", ", _inFlight)}";
            }
        }

        public int Sent(string fragment)
        {
            lock (_lock)
            {
                return _sent.Count(p => p.Contains(fragment, StringComparison.Ordinal));
            }
        }

        public int InFlight(string fragment)
        {
            lock (_lock)
            {
                return _inFlight.Count(p => p.Contains(fragment, StringComparison.Ordinal));
            }
        }

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var path = request.RequestUri!.AbsolutePath;
            lock (_lock)
            {
                _sent.Add(path);
                _inFlight.Add(path);
            }

            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
                throw new InvalidOperationException("unreachable");
            }
            finally
            {
                lock (_lock)
                {
                    _inFlight.Remove(path);
                }
            }
        }
    }
}
