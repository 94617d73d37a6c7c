using System.Net;
using System.Net.Sockets;
using System.Text;
using LbAllocator.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Prometheus;

namespace LbAllocator.Controller.Tests;

/// <summary>The status endpoint as Prometheus and the kubelet see it: paths, status codes, bodies, content types, the bound address.</summary>
public sealed class StatusServerTests : IAsyncLifetime, IDisposable
{
    private readonly Health _health = new(TimeProvider.System);
    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private StatusServer _server = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _server = await StartAsync("127.0.0.1:0");
        _http = new HttpClient { BaseAddress = _server.Url };
    }

    public async Task DisposeAsync()
    {
        await _server.StopAsync(CancellationToken.None);
        await _server.DisposeAsync();
    }

    public void Dispose() => _http.Dispose();

    [Fact]
    public void Port_0_reports_the_port_bound()
    {
        Assert.Equal("127.0.0.1", _server.Url!.Host);
        Assert.NotEqual(0, _server.Url.Port);
        Assert.Equal("/", _server.Url.AbsolutePath);
    }

    [Fact]
    public async Task Health_and_readiness_are_text_with_200_or_503()
    {
        using var live = await _http.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.Equal("text/plain; charset=utf-8", live.Content.Headers.ContentType!.ToString());
        Assert.Equal("ok process: serving\n", await live.Content.ReadAsStringAsync());

        using var starting = await _http.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, starting.StatusCode);
        Assert.Equal("FAIL startup: starting\n", await starting.Content.ReadAsStringAsync());

        _health.SetReady("caches", true, "synced");
        using var ready = await _http.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal("ok caches: synced\n", await ready.Content.ReadAsStringAsync());

        _health.Beat("loop", TimeSpan.Zero);
        await Task.Delay(TimeSpan.FromMilliseconds(20));
        using var stuck = await _http.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, stuck.StatusCode);
        Assert.StartsWith("FAIL loop: last turned ", await stuck.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Metrics_are_the_registry_in_the_Prometheus_text_format()
    {
        Metrics.WithCustomRegistry(_registry).CreateCounter("test_requests_total", "Requests.").Inc(3);
        using var response = await _http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType!.ToString());
        Assert.Equal(3, LbAllocator.TestApiServer.PrometheusText.Parse(await response.Content.ReadAsStringAsync())["test_requests_total"]);
    }

    [Theory]
    [InlineData("GET", "/HEALTHZ", HttpStatusCode.OK)]
    [InlineData("GET", "/healthz/", HttpStatusCode.OK)]
    [InlineData("GET", "/healthz?verbose=1", HttpStatusCode.OK)]
    [InlineData("GET", "/", HttpStatusCode.NotFound)]
    [InlineData("GET", "/healthzz", HttpStatusCode.NotFound)]
    [InlineData("POST", "/metrics", HttpStatusCode.MethodNotAllowed)]
    [InlineData("HEAD", "/healthz", HttpStatusCode.MethodNotAllowed)]
    public async Task Paths_and_methods_route_as_before(string method, string path, HttpStatusCode expected)
    {
        using var response = await _http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        Assert.Equal(expected, response.StatusCode);
    }

    [Fact]
    public async Task A_client_that_sends_nothing_holds_up_no_one_else()
    {
        using var silent = new TcpClient();
        await silent.ConnectAsync(IPAddress.Loopback, _server.Url!.Port);
        // Well under the 10 s a silent client is given: a server answering one connection at a time would time out.
        using var http = new HttpClient { BaseAddress = _server.Url, Timeout = TimeSpan.FromSeconds(5) };
        using var response = await http.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task A_request_that_is_not_HTTP_gets_400()
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, _server.Url!.Port);
        var stream = client.GetStream();
        await stream.WriteAsync("hello\r\n\r\n"u8.ToArray());
        using var reader = new StreamReader(stream, Encoding.ASCII);
        Assert.Equal("HTTP/1.1 400 Bad Request", await reader.ReadLineAsync());
    }

    [Fact]
    public async Task IPv6_addresses_are_served_and_reported_in_brackets()
    {
        if (!Socket.OSSupportsIPv6)
        {
            return; // nothing to check on a host without IPv6
        }

        await using var server = await StartAsync("[::1]:0");
        Assert.Equal($"http://[::1]:{server.Url!.Port}/", server.Url.ToString());
        using var http = new HttpClient { BaseAddress = server.Url };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
    }

    [Fact]
    public async Task A_port_in_use_is_a_StatusEndpointException()
    {
        var address = $"127.0.0.1:{_server.Url!.Port}";
        var e = await Assert.ThrowsAsync<StatusEndpointException>(() => StartAsync(address));
        Assert.StartsWith($"cannot listen on {address}: ", e.Message, StringComparison.Ordinal);
    }

    private async Task<StatusServer> StartAsync(string address)
    {
        var server = new StatusServer(Options.Create(new StatusOptions { Address = address }), _health, _registry, NullLogger<StatusServer>.Instance);
        await server.StartAsync(CancellationToken.None);
        return server;
    }
}
