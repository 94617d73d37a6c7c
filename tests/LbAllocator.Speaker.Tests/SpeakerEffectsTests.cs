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
/// Carrying plans out: probes before answering (but for addresses taken from a dead speaker), conflicts held back,
/// claims of answered addresses defended. And against an API server whose every request hangs: the answerer changes
/// at once, whatever the status writer is stuck on; the writer's calls time out and are retried in the background.
/// </summary>
public sealed class SpeakerEffectsTests : IDisposable
{
    private static readonly Ip Address = Ip.Parse("192.0.2.10");
    private static readonly NetworkInterfaceInfo Eth0 = new("eth0", Up: true, Broadcast: true, Loopback: false, NoArp: false, Enslaved: false, Ethernet: true);
    private static readonly V1Service Web = new() { Metadata = new V1ObjectMeta { Name = "web", NamespaceProperty = "default" } };

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 26, 12, 0, 0, TimeSpan.Zero));
    private readonly HangingHandler _api = new();
    private readonly RecordingAnswerer _answerer = new();
    private readonly RecordingWatch _watch = new();
    private readonly RecordingStatusWriter _writer2 = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly SpeakerOptions _options = new() { NodeName = "node-a" };
    private readonly L2StatusWriter _writer;
    private readonly SpeakerEffects _effects; // with a recording writer
    private readonly SpeakerEffects _hungEffects; // with the real writer, every API call of which hangs
    private readonly ElectionTable _election;
    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private readonly Task _writing;

    public SpeakerEffectsTests()
    {
        // The handler answers nothing and forwards nothing: no request leaves the process.
        var client = new KubeApi(new KubeConnection { Host = "http://127.0.0.1:9" }, _api);
        var statuses = new ResourceCache<V1Alpha1ServiceL2Status>(Sources.ServiceL2Statuses(client, _options.Namespace), NullLogger.Instance);
        _writer = new L2StatusWriter(client, _options, statuses, _time, NullLogger<L2StatusWriter>.Instance);
        _hungEffects = new SpeakerEffects(_answerer, _watch, _writer, NewMetrics(), _options, _time, NullLogger<SpeakerEffects>.Instance);
        _effects = new SpeakerEffects(_answerer, _watch, _writer2, NewMetrics(), _options, _time, NullLogger<SpeakerEffects>.Instance);
        var config = ConfigValidator.Validate([new PoolSpec("main", ["192.0.2.0/24"])], [new Core.L2AdvertisementSpec("all")]);
        _election = ElectionTable.Build(
            config.Pools,
            config.Advertisements,
            [new ElectionNode("node-a", new Dictionary<string, string>(), SpeakerAlive: true)],
            [new AnnouncedService("default/web", [Address], "main", new Dictionary<string, string>())]);
        _writing = _writer.RunAsync(_stop.Token);
    }

    [Fact]
    public async Task Ownership_changes_reach_the_answerer_at_once_while_every_api_call_hangs()
    {
        Apply(_hungEffects, fromTheDead: true);
        Assert.Equal([Address], _answerer.Owned.Keys);

        // The status write (and the nodeAssigned event) are now stuck in the API server.
        await Eventually(() => _api.InFlight(StatusPath) >= 1 && _api.InFlight(EventPath) >= 1);

        // This node's speaker is fenced: the next decision gives the address up, without waiting for anything.
        _election.SetNode(new ElectionNode("node-a", new Dictionary<string, string>(), SpeakerAlive: false));
        await Task.Run(() => Apply(_hungEffects, fromTheDead: true)).WaitAsync(TimeSpan.FromSeconds(5)); // throws if the decision waited on the API
        Assert.Empty(_answerer.Owned);
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
        Apply(_hungEffects, fromTheDead: true);
        await Eventually(() => _api.Sent(StatusPath) == 1);

        _time.Advance(_options.ApiTimeout);
        await Eventually(() =>
        {
            _time.Advance(TimeSpan.FromMilliseconds(100)); // the backoff before the retry
            return _api.Sent(StatusPath) >= 2;
        });
    }

    [Fact]
    public void An_address_not_taken_from_the_dead_is_probed_first_and_one_a_foreign_host_answers_is_held_back_with_backoff()
    {
        var other = new MacAddress(0x02_00_00_00_00_99);
        Assert.Equal(AddressGuard.ProbeWait, Apply(fromTheDead: false));
        Assert.Empty(_answerer.Owned);
        Assert.Equal([(Address, "eth0")], _watch.Probes);
        Assert.Equal([Address], _watch.Guarded);

        // A host that is not a speaker answers the probe: a conflict, probed again after the backoff.
        Assert.True(_effects.Claimed(Address, other));
        Assert.Equal(AddressGuard.FirstRetry, Apply(fromTheDead: false));
        Assert.Empty(_answerer.Owned);
        Assert.Equal([Address], _watch.Guarded); // still watched while held back
        Assert.Equal(1, Prometheus.Metrics.WithCustomRegistry(_registry).CreateCounter("lballocator_speaker_address_conflicts_total", "").Value);
        Assert.Single(_writer2.EventsOf(Kubernetes.Crds.L2Conditions.AddressConflict));

        _time.Advance(AddressGuard.FirstRetry);
        Apply(fromTheDead: false);
        Assert.Equal(2, _watch.Probes.Count);
        _time.Advance(AddressGuard.ProbeWait);
        Apply(fromTheDead: false);
        Assert.Equal([Address], _answerer.Owned.Keys);
        Assert.Single(_writer2.EventsOf("AddressConflictResolved"));
    }

    [Fact]
    public void A_speaker_still_answering_the_probe_is_probed_again_shortly_and_the_address_answered_once_it_is_quiet()
    {
        var holder = new MacAddress(0x02_00_00_00_00_0b);
        _effects.SpeakerOf = mac => mac == holder ? "node-b" : null;
        Apply(fromTheDead: false);
        Assert.True(_effects.Claimed(Address, holder)); // the holder has not let go yet: no conflict
        Assert.Equal(AddressGuard.ReprobeDelay, Apply(fromTheDead: false));
        _time.Advance(AddressGuard.ReprobeDelay);
        Apply(fromTheDead: false);
        Assert.Equal(2, _watch.Probes.Count);
        Assert.Empty(_answerer.Owned);
        _time.Advance(AddressGuard.ProbeWait);
        Apply(fromTheDead: false);
        Assert.Equal([Address], _answerer.Owned.Keys);
        Assert.Empty(_writer2.EventsOf(Kubernetes.Crds.L2Conditions.AddressConflict));
    }

    [Fact]
    public void An_address_taken_from_a_dead_speaker_is_answered_at_once_without_a_probe()
    {
        Assert.Null(Apply(fromTheDead: true));
        Assert.Equal([Address], _answerer.Owned.Keys);
        Assert.Empty(_watch.Probes);
        Assert.Equal([(Address, "eth0")], _answerer.Gratuitous);
    }

    [Fact]
    public async Task A_claim_of_an_answered_address_is_defended_at_once_and_once_more_at_the_end_of_a_flood_and_never_yields_it()
    {
        var forger = new MacAddress(0x02_00_00_00_00_66);
        Apply(fromTheDead: true);
        _answerer.Gratuitous.Clear();

        for (var i = 0; i < 5; i++)
        {
            Assert.False(_effects.Claimed(Address, forger)); // no pass: nothing changes
        }

        Assert.Equal([(Address, "eth0")], _answerer.Gratuitous);
        // Claims went on after the first defence: once more when the interval ends, so the last word is the owner's.
        _time.Advance(AddressGuard.DefendInterval);
        await Eventually(() => _answerer.Gratuitous.Count(g => g == (Address, "eth0")) >= 2);
        Apply(fromTheDead: true);
        Assert.Equal([Address], _answerer.Owned.Keys);
        Assert.Empty(_watch.Probes);
        Assert.Equal(2, Prometheus.Metrics.WithCustomRegistry(_registry).CreateCounter("lballocator_speaker_addresses_defended_total", "").Value);
        // One event, whatever the flood: "at most every few minutes".
        var defended = Assert.Single(_writer2.EventsOf("AddressDefended"));
        Assert.Equal("192.0.2.10 was announced by 02:00:00:00:00:66, a host that is not a speaker; node node-a announced it again and keeps answering it (reported at most every 5 minutes)", defended.Message);
    }

    [Fact]
    public async Task A_service_is_told_announced_only_once_its_first_probe_has_passed()
    {
        var effects = new SpeakerEffects(_answerer, _watch, _writer, NewMetrics(), _options, _time, NullLogger<SpeakerEffects>.Instance);
        Apply(effects, fromTheDead: false);
        await Task.Delay(200);
        Assert.Empty(_answerer.Owned);
        Assert.Equal(0, _api.Sent(EventPath)); // held back by the probe: not announced yet, so not told

        _time.Advance(AddressGuard.ProbeWait);
        Apply(effects, fromTheDead: false);
        Assert.Equal([Address], _answerer.Owned.Keys);
        await Eventually(() => _api.Sent(EventPath) == 1);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _writing.Wait(TimeSpan.FromSeconds(5));
        _effects.Dispose();
        _hungEffects.Dispose();
        _writer.Dispose();
        _stop.Dispose();
    }

    private const string StatusPath = "servicel2statuses";
    private const string EventPath = "/events";

    private TimeSpan? Apply(bool fromTheDead) => Apply(_effects, fromTheDead);

    /// <param name="fromTheDead">Whether the address is taken from a speaker now dead (answered at once) or not (probed first).</param>
    private TimeSpan? Apply(SpeakerEffects effects, bool fromTheDead) =>
        effects.Apply(
            SpeakerPlan.Make("node-a", _election, standing: true, janitor: false, [], [Eth0], new Regex("^lo$")),
            fromTheDead ? new HashSet<Ip> { Address } : [],
            new Dictionary<string, MacAddress> { ["eth0"] = FakeCaptures.Mac },
            key => key == "default/web" ? Web : null,
            _stop.Token);

    private SpeakerMetrics NewMetrics() => new(Prometheus.Metrics.WithCustomRegistry(_registry), _registry, _answerer);

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
