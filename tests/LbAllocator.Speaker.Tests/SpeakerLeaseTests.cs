using System.Globalization;
using LbAllocator.Hosting;
using LbAllocator.Kubernetes.Client;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Prometheus;

namespace LbAllocator.Speaker.Tests;

/// <summary>The speaker's own lease on a fake clock, against the API server double (which can fail requests).</summary>
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
        var metrics = new SpeakerMetrics(Metrics.WithCustomRegistry(registry), registry, new RecordingAnnouncer());
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
    public async Task Coming_back_takes_two_renewals_in_a_row_so_the_node_that_stood_in_has_let_go()
    {
        await RenewedAsync(advance: false);
        Assert.False(_lease.Healthy, "one renewal at start: the others have not seen it yet and may still answer for our addresses");
        await RenewedAsync();
        Assert.True(_lease.Healthy, "the second renewal in a row");

        // Renewals fail for longer than the lease allows: fenced.
        _server.FailRequestsFor(TimeSpan.FromMinutes(10));
        await FailedRenewalAsync();
        await FailedRenewalAsync();
        Assert.True(_lease.Healthy, "2 s after the last renewal the lease (3 s) still holds");
        await FailedRenewalAsync();
        Assert.False(_lease.Healthy, "3 s after the last renewal");

        // The API is back: the first renewal tells the others, the second lets us answer again.
        _server.FailRequestsFor(TimeSpan.Zero);
        await RenewedAsync();
        Assert.False(_lease.Healthy, "back after one renewal: the node that stood in may not have seen it yet");
        await RenewedAsync();
        Assert.True(_lease.Healthy, "two renewals in a row");
    }

    [Fact]
    public async Task The_lease_says_the_node_cannot_answer_until_told_it_can_and_counts_renewed_again_after_two_renewals_saying_so()
    {
        // Until the reconciler has opened a capture, the lease does not vouch for the node.
        await RenewedAsync(advance: false);
        Assert.StartsWith("starting", CannotAnswerOnServer());
        await RenewedAsync();
        Assert.True(_lease.Healthy, "renewed twice: the lease itself is fresh");

        _lease.SetCannotAnswer("eth0: cannot capture: permission denied (the speaker needs the NET_RAW capability)");
        await RenewedAsync();
        Assert.Equal("eth0: cannot capture: permission denied (the speaker needs the NET_RAW capability)", CannotAnswerOnServer());

        // It can answer again: the others judging by the lease counted it dead, and see it back only with this
        // renewal, so it counts as renewed from the next one.
        _lease.SetCannotAnswer(null);
        await RenewedAsync();
        Assert.Null(CannotAnswerOnServer());
        Assert.False(_lease.Healthy, "the first renewal saying it can answer: the others may not have seen it yet");
        await RenewedAsync();
        Assert.True(_lease.Healthy, "the second renewal saying it can answer");
    }

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
