using System.Globalization;
using LbAllocator.Hosting;
using LbAllocator.Kubernetes.Client;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Prometheus;

namespace LbAllocator.Speaker.Tests;

/// <summary>The speaker's own lease on a fake clock, against the API server double (which can fail requests), and how it judges the others'.</summary>
public sealed class SpeakerLeaseTests : IAsyncLifetime, IDisposable
{
    private static readonly ResourceType Leases = ResourceType.Find("coordination.k8s.io", "v1", "leases")!;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 26, 12, 0, 0, TimeSpan.Zero));
    private readonly SpeakerOptions _options = new() { NodeName = "node-a", Namespace = "lballocator-system" };
    private readonly CancellationTokenSource _stop = new();
    private TestApiServer.TestApiServer _server = null!;
    private KubeApi _client = null!;
    private SpeakerLease _lease = null!;
    private Task _loop = Task.CompletedTask;

    public async Task InitializeAsync()
    {
        _server = await TestApiServer.TestApiServer.StartAsync();
        _client = _server.CreateApi();
        var registry = Metrics.NewCustomRegistry();
        var metrics = new SpeakerMetrics(Metrics.WithCustomRegistry(registry), registry, new RecordingAnswerer());
        _lease = new SpeakerLease(_client, _options, metrics, new Health(_time), _time, NullLogger<SpeakerLease>.Instance);
        _loop = _lease.RunAsync(_stop.Token);
    }

    public async Task DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _client.Dispose();
        await _server.DisposeAsync();
    }

    public void Dispose() => _stop.Dispose();

    [Fact]
    public async Task The_lease_is_renewed_once_a_renew_interval_and_a_renewal_after_failures_says_the_api_is_back()
    {
        var recovered = 0;
        _lease.Recovered += () => Interlocked.Increment(ref recovered);
        await RenewedAsync(advance: false);
        var writes = LeaseWrites();
        await RenewedAsync();
        Assert.Equal(writes + 1, LeaseWrites()); // one write per renew interval (10 s): kubelet's pace
        Assert.Equal(0, recovered);

        _server.FailRequestsFor(TimeSpan.FromMinutes(10));
        await FailedRenewalAsync();
        _server.FailRequestsFor(TimeSpan.Zero);
        await RenewedAsync();
        Assert.Equal(1, recovered);
        await RenewedAsync();
        Assert.Equal(1, recovered);
    }

    [Fact]
    public async Task The_lease_says_the_node_cannot_answer_until_told_it_can()
    {
        // Until the reconciler has opened a capture, the lease says so (for people: no speaker reads it).
        await RenewedAsync(advance: false);
        Assert.StartsWith("starting", CannotAnswerOnServer());

        _lease.SetCannotAnswer("eth0: cannot capture: permission denied (the speaker needs the NET_RAW capability)");
        await RenewedAsync();
        Assert.Equal("eth0: cannot capture: permission denied (the speaker needs the NET_RAW capability)", CannotAnswerOnServer());

        _lease.SetCannotAnswer(null);
        await RenewedAsync();
        Assert.Null(CannotAnswerOnServer());
    }

    [Fact]
    public async Task A_lease_deleted_under_a_running_speaker_is_made_anew_at_the_next_renewal()
    {
        await RenewedAsync(advance: false);
        _server.Store.Delete(Leases, _options.Namespace, SpeakerLease.NameFor(_options.NodeName));
        var failures = _server.Requests.Count;
        await RenewedAsync(); // the replace finds nothing: the same turn creates it, not the one after
        Assert.NotNull(_server.Store.Get(Leases, _options.Namespace, SpeakerLease.NameFor(_options.NodeName)));
        Assert.Contains(_server.Requests.Skip(failures), r => r.Method == "POST");
    }

    [Fact]
    public void Another_speaker_renews_while_its_lease_changes_within_its_duration_as_this_node_sees_it()
    {
        var now = _time.GetUtcNow().UtcDateTime;
        Assert.False(_lease.OthersRenewing([Lease("node-a", "1", now)])); // our own lease does not count
        Assert.True(_lease.OthersRenewing([Lease("node-b", "1", now)])); // seen now: renewed now, whatever it says

        _time.Advance(TimeSpan.FromSeconds(19));
        Assert.True(_lease.OthersRenewing([Lease("node-b", "1", now)]));
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.False(_lease.OthersRenewing([Lease("node-b", "1", now)]), "unchanged for its whole duration (20 s) on our clock");
        Assert.True(_lease.OthersRenewing([Lease("node-b", "2", _time.GetUtcNow().UtcDateTime)]), "renewed again");
    }

    [Fact]
    public void A_lease_renewed_long_ago_by_its_own_clock_is_not_counted_even_when_first_seen()
    {
        var longAgo = _time.GetUtcNow().UtcDateTime - TimeSpan.FromMinutes(5);
        Assert.False(_lease.OthersRenewing([Lease("node-b", "7", longAgo)]));
        // A renewal a few seconds in our past (clocks differ) still counts.
        Assert.True(_lease.OthersRenewing([Lease("node-c", "1", _time.GetUtcNow().UtcDateTime - TimeSpan.FromSeconds(22))]));
    }

    private static k8s.Models.V1Lease Lease(string holder, string version, DateTime renewed) => new()
    {
        Metadata = new k8s.Models.V1ObjectMeta { Name = SpeakerLease.NameFor(holder), ResourceVersion = version },
        Spec = new k8s.Models.V1LeaseSpec { HolderIdentity = holder, LeaseDurationSeconds = 20, RenewTime = renewed },
    };

    private int LeaseWrites() => _server.Requests.Count(r => r.Path.Contains("/leases", StringComparison.Ordinal) && r.Method is "PUT" or "POST");

    private string? CannotAnswerOnServer() =>
        _server.Store.Get(Leases, _options.Namespace, SpeakerLease.NameFor(_options.NodeName))?["metadata"]?["annotations"]?[SpeakerLease.CannotAnswerAnnotation]?.GetValue<string>();

    /// <summary>Moves the clock to the next renewal (unless it is the first) and waits until the server holds it.</summary>
    private async Task RenewedAsync(bool advance = true)
    {
        if (advance)
        {
            _time.Advance(_options.RenewInterval);
        }

        var due = _time.GetUtcNow().AddMilliseconds(-1);
        await UntilAsync(() => _server.Store.Get(Leases, _options.Namespace, SpeakerLease.NameFor(_options.NodeName))?["spec"]?["renewTime"]?.GetValue<string>() is { } renewed
            && DateTimeOffset.Parse(renewed, CultureInfo.InvariantCulture) >= due, "the lease was not renewed");
    }

    /// <summary>Moves the clock to the next renewal and waits until it was attempted (and refused).</summary>
    private async Task FailedRenewalAsync()
    {
        var before = LeaseRequests();
        _time.Advance(_options.RenewInterval);
        await UntilAsync(() => LeaseRequests() > before, "no renewal was attempted");
    }

    private static async Task UntilAsync(Func<bool> condition, string failure)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition() && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }

        Assert.True(condition(), failure);
        // The loop takes in the answer, checks its health and parks on the fake clock again.
        await Task.Delay(200);
    }

    private int LeaseRequests() => _server.Requests.Count(r => r.Path.Contains("/leases", StringComparison.Ordinal));
}
