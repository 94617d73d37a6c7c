using System.Net;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using LbAllocator.TestApiServer;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>
/// The client's manners against the double's faults (429, 503, Retry-After), on a fake clock: what is retried, after
/// exactly how long, how often; and the token bucket in front of every request start.
/// </summary>
public sealed class KubeApiMannersTests : IAsyncLifetime, IDisposable
{
    private readonly TimerClock _clock = new();
    private readonly CancellationTokenSource _stop = new(TimeSpan.FromSeconds(30));
    private TestApiServer.TestApiServer _server = null!;

    public async Task InitializeAsync() => _server = await TestApiServer.TestApiServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    public void Dispose() => _stop.Dispose();

    private CancellationToken Stop => _stop.Token;

    private KubeApi Api(double? qps = null, int burst = 1) =>
        new(new KubeConnection { Host = _server.Url.ToString() }, new KubeApiSettings { Qps = qps, Burst = burst, Time = _clock });

    /// <summary>Made through a client of its own, unthrottled and on the real clock.</summary>
    private async Task CreateServiceAsync(string name)
    {
        using var setup = _server.CreateApi();
        await setup.CreateAsync(KubeResources.Services, "default", new V1Service { Metadata = new V1ObjectMeta { Name = name } }, Stop);
    }

    private static bool Services(RecordedRequest r) => r.Path.EndsWith("/services", StringComparison.Ordinal);

    [Fact]
    public async Task A_list_answered_429_is_retried_after_the_Retry_After_seconds()
    {
        using var api = Api();
        _server.Inject(Services, 429, times: 2, retryAfter: "3");

        var listing = api.ListAsync(KubeResources.Services, ns: null, cancellationToken: Stop);
        await _clock.ElapseNextAsync(TimeSpan.FromSeconds(3), Stop);
        await _clock.ElapseNextAsync(TimeSpan.FromSeconds(3), Stop);

        Assert.NotNull((await listing).Items);
        Assert.Equal(3, _server.CountRequests("GET", "/services"));
    }

    /// <summary>Retry-After as an HTTP date: the wait is until that date, on the client's clock.</summary>
    [Fact]
    public async Task A_read_answered_503_is_retried_at_the_Retry_After_date()
    {
        using var api = Api();
        await CreateServiceAsync("s");
        _server.Inject(r => r.Path.EndsWith("/services/s", StringComparison.Ordinal), 503, retryAfter: (_clock.GetUtcNow() + TimeSpan.FromSeconds(7)).ToString("R"));

        var getting = api.GetAsync(KubeResources.Services, "default", "s", cancellationToken: Stop);
        await _clock.ElapseNextAsync(TimeSpan.FromSeconds(7), Stop);

        Assert.Equal("s", (await getting).Metadata.Name);
    }

    [Fact]
    public async Task A_503_without_Retry_After_is_an_ordinary_failure()
    {
        using var api = Api();
        _server.Inject(Services, 503);

        var e = await Assert.ThrowsAsync<KubeApiException>(() => api.ListAsync(KubeResources.Services, ns: null, cancellationToken: Stop));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, e.StatusCode);
        Assert.Equal(1, _server.CountRequests("GET", "/services"));
        Assert.True(_clock.NoTimers);
    }

    /// <summary>
    /// A write answered 429 was refused before anything was done: it is sent again. One answered 503 may have been done
    /// (a proxy's answer): it is not, whatever the Retry-After.
    /// </summary>
    [Fact]
    public async Task A_write_is_retried_after_429_but_not_after_503()
    {
        using var api = Api();
        static bool Creates(RecordedRequest r) => r.Method == "POST" && r.Path.EndsWith("/leases", StringComparison.Ordinal);
        _server.Inject(Creates, 429, retryAfter: "1");

        var creating = api.CreateAsync(KubeResources.Leases, "default", new V1Lease { Metadata = new V1ObjectMeta { Name = "a" } }, Stop);
        await _clock.ElapseNextAsync(TimeSpan.FromSeconds(1), Stop);
        Assert.Equal("a", (await creating).Metadata.Name);

        _server.Inject(Creates, 503, retryAfter: "1");
        var e = await Assert.ThrowsAsync<KubeApiException>(() => api.CreateAsync(KubeResources.Leases, "default", new V1Lease { Metadata = new V1ObjectMeta { Name = "b" } }, Stop));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, e.StatusCode);
        Assert.Equal(3, _server.CountRequests("POST", "/leases"));
        Assert.True(_clock.NoTimers);
    }

    [Fact]
    public async Task Retries_stop_after_ten()
    {
        using var api = Api();
        _server.Inject(Services, 429, times: 100, retryAfter: "1");

        var listing = api.ListAsync(KubeResources.Services, ns: null, cancellationToken: Stop);
        for (var retry = 0; retry < 10; retry++)
        {
            await _clock.ElapseNextAsync(TimeSpan.FromSeconds(1), Stop);
        }

        var e = await Assert.ThrowsAsync<KubeApiException>(() => listing);
        Assert.Equal(HttpStatusCode.TooManyRequests, e.StatusCode);
        Assert.Equal(11, _server.CountRequests("GET", "/services"));
        Assert.True(_clock.NoTimers);
    }

    /// <summary>The start of a watch is a read like any other: retried after its Retry-After, then streamed.</summary>
    [Fact]
    public async Task The_start_of_a_watch_answered_429_is_retried()
    {
        using var api = Api();
        _server.Inject(r => r.Query.Contains("watch=true", StringComparison.Ordinal), 429, retryAfter: "2");

        await using var events = api.WatchAsync(KubeResources.Services, null, null, null, "1", 60, Stop).GetAsyncEnumerator(Stop);
        var moving = events.MoveNextAsync().AsTask();
        await _clock.ElapseNextAsync(TimeSpan.FromSeconds(2), Stop);
        await CreateServiceAsync("w");

        Assert.True(await moving);
        Assert.Equal("w", events.Current.Object.Metadata.Name);
        Assert.Equal(2, _server.Requests.Count(r => r.Query.Contains("watch=true", StringComparison.Ordinal)));
    }

    /// <summary>
    /// Every request start takes a token, watches' included: a burst of 3 goes at once, then one every 1/qps; an idle
    /// spell refills the bucket to its burst and no further. Lease requests (heartbeats) never wait.
    /// </summary>
    [Fact]
    public async Task Every_request_start_but_a_leases_waits_for_the_token_bucket()
    {
        using var api = Api(qps: 2, burst: 3);
        await api.ListAsync(KubeResources.Services, ns: null, cancellationToken: Stop);
        await api.ListAsync(KubeResources.Nodes, ns: null, cancellationToken: Stop);
        await api.CreateAsync(KubeResources.Services, "default", new V1Service { Metadata = new V1ObjectMeta { Name = "s" } }, Stop);
        Assert.True(_clock.NoTimers);

        using var endWatch = CancellationTokenSource.CreateLinkedTokenSource(Stop);
        await using var watch = api.WatchAsync(KubeResources.Services, null, null, null, "1", 60, endWatch.Token).GetAsyncEnumerator(endWatch.Token);
        var watching = watch.MoveNextAsync().AsTask();
        Assert.Equal(TimeSpan.FromMilliseconds(500), await _clock.NextTimerAsync(Stop));
        Assert.Equal(0, _server.Requests.Count(r => r.Query.Contains("watch=true", StringComparison.Ordinal)));
        var getting = api.GetAsync(KubeResources.Services, "default", "s", cancellationToken: Stop);
        Assert.Equal(TimeSpan.FromSeconds(1), await _clock.NextTimerAsync(Stop));
        await api.CreateAsync(KubeResources.Leases, "default", new V1Lease { Metadata = new V1ObjectMeta { Name = "heartbeat" } }, Stop);

        _clock.Advance(TimeSpan.FromSeconds(1));
        await getting;
        while (!_server.Requests.Any(r => r.Query.Contains("watch=true", StringComparison.Ordinal)))
        {
            await Task.Delay(10, Stop);
        }

        _clock.Advance(TimeSpan.FromMinutes(1));
        for (var i = 0; i < 3; i++)
        {
            await api.GetAsync(KubeResources.Services, "default", "s", cancellationToken: Stop);
        }

        Assert.True(_clock.NoTimers);
        var fourth = api.GetAsync(KubeResources.Services, "default", "s", cancellationToken: Stop);
        await _clock.ElapseNextAsync(TimeSpan.FromMilliseconds(500), Stop);
        await fourth;
        await endWatch.CancelAsync();
        await watching.ContinueWith(_ => { }, TaskScheduler.Default); // a bookmark, or cancelled: either way it streamed
    }

    /// <summary>A wait given up gives its token back: the next request goes as if it had never asked.</summary>
    [Fact]
    public async Task A_cancelled_wait_gives_its_token_back()
    {
        var bucket = new TokenBucket(qps: 1, burst: 1, _clock);
        Assert.Equal(TimeSpan.Zero, await bucket.TakeAsync(Stop));
        using var cancel = new CancellationTokenSource();
        var waiting = bucket.TakeAsync(cancel.Token).AsTask();
        Assert.Equal(TimeSpan.FromSeconds(1), await _clock.NextTimerAsync(Stop));
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);

        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(TimeSpan.Zero, await bucket.TakeAsync(Stop));
    }

    [Theory]
    [InlineData("GET", 429, "5", 5.0)]
    [InlineData("PUT", 429, "5", 5.0)]
    [InlineData("GET", 503, "5", 5.0)]
    [InlineData("PUT", 503, "5", null)]
    [InlineData("GET", 500, "5", null)]
    [InlineData("GET", 429, null, null)]
    [InlineData("GET", 503, "Sat, 01 Jan 2000 00:00:00 GMT", 0.0)] // a date gone by: at once
    public void What_is_retried_and_after_how_long(string method, int code, string? retryAfter, double? seconds)
    {
        using var response = new HttpResponseMessage((HttpStatusCode)code);
        if (retryAfter is not null)
        {
            response.Headers.TryAddWithoutValidation("Retry-After", retryAfter);
        }

        var delay = KubeApi.RetryDelay(new HttpMethod(method), response, _clock.GetUtcNow());

        Assert.Equal(seconds is { } s ? TimeSpan.FromSeconds(s) : null, delay);
    }
}
