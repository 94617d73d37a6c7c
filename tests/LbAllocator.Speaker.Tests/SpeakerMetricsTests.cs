using LbAllocator.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Prometheus;

namespace LbAllocator.Speaker.Tests;

public class SpeakerMetricsTests
{
    private const string Requests = "lballocator_speaker_requests_received_total";

    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private readonly SpeakerMetrics _metrics;

    public SpeakerMetricsTests() =>
        _metrics = new SpeakerMetrics(Metrics.WithCustomRegistry(_registry), _registry, new RecordingAnswerer());

    [Fact]
    public void Per_address_series_follow_the_counts_and_restart_when_an_address_is_taken_again()
    {
        var address = Ip.Parse("192.0.2.10");
        _metrics.Export(new Dictionary<Ip, AddressCounters> { [address] = Counters(requests: 5) });
        Assert.Equal(5, RequestsOf("192.0.2.10"));

        _metrics.Export(new Dictionary<Ip, AddressCounters> { [address] = Counters(requests: 7) });
        Assert.Equal(7, RequestsOf("192.0.2.10"));

        // Given up and taken back between two scrapes: the announcer's count starts again from zero.
        _metrics.Export(new Dictionary<Ip, AddressCounters> { [address] = Counters(requests: 2) });
        Assert.Equal(2, RequestsOf("192.0.2.10"));

        // Given up and seen gone by a scrape, then taken back: it starts from the new count.
        _metrics.Export(new Dictionary<Ip, AddressCounters>());
        _metrics.Export(new Dictionary<Ip, AddressCounters> { [address] = Counters(requests: 1) });
        Assert.Equal(1, RequestsOf("192.0.2.10"));
    }

    [Fact]
    public void The_members_gauge_follows_the_view_each_pass_reports()
    {
        var readiness = new SpeakerReadiness(new SpeakerOptions { NodeName = "node-a" }, new LbAllocator.Hosting.Health(TimeProvider.System), _metrics, new RecordingStatusWriter(), NullLogger<SpeakerReadiness>.Instance);
        readiness.Report(View("node-a", "node-b", "node-c"), answering: true, cannotAnswer: null, node: null);
        Assert.Equal(3, Gauge("lballocator_speaker_lan_members"));

        readiness.Report(View("node-a", "node-c"), answering: true, cannotAnswer: null, node: null);
        Assert.Equal(2, Gauge("lballocator_speaker_lan_members"));
    }

    private static Lan.MembershipView View(params string[] alive) =>
        new(1, alive.ToHashSet(StringComparer.Ordinal), Lan.MemberState.Member, alive.Length - 1, alive.Length - 1, null, false, new HashSet<string>());

    private double Gauge(string name) => Metrics.WithCustomRegistry(_registry).CreateGauge(name, "").Value;

    private static AddressCounters Counters(long requests)
    {
        var counters = new AddressCounters();
        counters.RequestsReceived = requests;
        return counters;
    }

    // The same name in the same registry is the same collector: this reads it without a scrape, which would
    // first copy the counts of this announcer (it owns nothing).
    private double RequestsOf(string address) =>
        Metrics.WithCustomRegistry(_registry).CreateCounter(Requests, "", ["address", "protocol"]).WithLabels(address, "arp").Value;
}
