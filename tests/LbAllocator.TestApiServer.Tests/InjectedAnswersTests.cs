using System.Net;
using System.Net.Http.Headers;

namespace LbAllocator.TestApiServer.Tests;

/// <summary>The double's injected answers: the code, reason and Retry-After asked for, to the requests matched, as often as asked.</summary>
public sealed class InjectedAnswersTests : IAsyncLifetime
{
    private TestApiServer _server = null!;

    public async Task InitializeAsync() => _server = await TestApiServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private HttpClient Http() => new() { BaseAddress = _server.Url };

    [Fact]
    public async Task The_matched_requests_get_the_code_and_Retry_After_as_often_as_asked_then_are_served()
    {
        _server.Inject(r => r.Path == "/api/v1/services", 429, times: 2, retryAfter: "3");
        using var http = Http();

        foreach (var _ in Enumerable.Range(0, 2))
        {
            using var refused = await http.GetAsync(new Uri("/api/v1/services", UriKind.Relative));
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Equal(new RetryConditionHeaderValue(TimeSpan.FromSeconds(3)), refused.Headers.RetryAfter);
            Assert.Contains("\"reason\":\"TooManyRequests\"", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using var other = await http.GetAsync(new Uri("/api/v1/nodes", UriKind.Relative));
        using var served = await http.GetAsync(new Uri("/api/v1/services", UriKind.Relative));
        Assert.Equal((HttpStatusCode.OK, HttpStatusCode.OK), (other.StatusCode, served.StatusCode));
    }

    /// <summary>200 injected on a watch: a stream that ends at once with no event, as a server that closes it straight away.</summary>
    [Fact]
    public async Task A_watch_answered_200_ends_at_once_with_nothing()
    {
        _server.Inject(r => r.Query.Contains("watch=true", StringComparison.Ordinal), 200);
        using var http = Http();

        using var response = await http.GetAsync(new Uri("/api/v1/services?watch=true&resourceVersion=1", UriKind.Relative));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("", await response.Content.ReadAsStringAsync());
    }
}
