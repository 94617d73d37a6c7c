using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Prometheus;

namespace LbAllocator.Hosting;

/// <summary>Serves /metrics (Prometheus text format), /healthz (liveness) and /readyz (readiness) over plain HTTP.</summary>
public sealed partial class StatusServer(IOptions<StatusOptions> options, Health health, CollectorRegistry registry, ILogger<StatusServer> logger)
    : IHostedService, IAsyncDisposable
{
    private WebApplication? _app;

    /// <summary>The address actually listened on (the port is known only after start when 0 was asked for).</summary>
    public Uri? Url { get; private set; }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders(); // the process's own logger reports what matters
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(options.Value.ParseEndPoint(), listen => listen.Protocols = HttpProtocols.Http1);
        });
        var app = builder.Build();
        app.MapGet("/metrics", async context =>
        {
            context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await registry.CollectAndExportAsTextAsync(context.Response.Body, context.RequestAborted);
        });
        app.MapGet("/healthz", context => WriteAsync(context, health.Liveness()));
        app.MapGet("/readyz", context => WriteAsync(context, health.Readiness()));
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (IOException e)
        {
            await app.DisposeAsync();
            throw new StatusEndpointException($"cannot listen on {options.Value.Address}: {e.Message}", e);
        }

        _app = app;
        Url = new Uri(app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        LogServing(Url);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_app is not null)
        {
            await _app.StopAsync(cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.DisposeAsync();
        }
    }

    private static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.StatusCode = report.Ok ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(report.Text, context.RequestAborted);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Serving /metrics, /healthz and /readyz on {Url}")]
    private partial void LogServing(Uri url);
}

/// <summary>The status endpoint could not be served (the address is in use or not on this host).</summary>
public sealed class StatusEndpointException(string message, Exception inner) : IOException(message, inner);
