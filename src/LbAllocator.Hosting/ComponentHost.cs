using System.Diagnostics.CodeAnalysis;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using Prometheus;

namespace LbAllocator.Hosting;

/// <summary>
/// The host shape the controller and the speaker share: settings from the command line, one-line logs
/// (text or JSON), options validated before anything starts, a Kubernetes client that reports its
/// requests, a metrics registry, and the status server.
/// </summary>
public static class ComponentHost
{
    public const string LogFormatKey = "Logging:Format";

    /// <param name="component">"controller" or "speaker": names the User-Agent and event source.</param>
    /// <param name="settings">Option overrides from the command line, as "Section:Name" keys.</param>
    public static HostApplicationBuilder CreateBuilder(string component, IReadOnlyDictionary<string, string?> settings, Action<ILoggingBuilder>? logging)
    {
        // No reloading of appsettings.json on change: that watches the content root (the working directory) and every
        // directory below it with inotify, and a busy tree there (a build, logs) kept the idle speaker's CPU up
        // (bench/RESULTS.md, issue 14). Settings come from the command line and the environment, read once.
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
        builder.Configuration.AddInMemoryCollection(settings);
        ConfigureLogging(builder.Logging, settings.GetValueOrDefault(LogFormatKey));
        logging?.Invoke(builder.Logging);

        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<Health>();
        builder.Services.AddSingleton<IHeap, GcHeap>();
        builder.Services.AddHostedService<HeapTrimmer>();
        var registry = Metrics.NewCustomRegistry();
        DotNetStats.Register(registry); // process_* and dotnet_* series: CPU, memory, GC, threads
        var metrics = Metrics.WithCustomRegistry(registry);
        builder.Services.AddSingleton(registry);
        builder.Services.AddSingleton<IMetricFactory>(metrics);
        builder.AddValidatedOptions<StatusOptions>(StatusOptions.Section, static (section, options) => section.Bind(options));
        builder.Services.AddSingleton<StatusServer>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<StatusServer>());
        return builder;
    }

    /// <summary>
    /// Registers <typeparamref name="T"/>, bound from its section by <paramref name="bind"/> and validated at start
    /// (data annotations, then IValidatableObject). The caller binds, as <c>(section, options) =&gt; section.Bind(options)</c>,
    /// because the configuration binding generator replaces the reflection binder only where the type is concrete.
    /// </summary>
    public static void AddValidatedOptions<[DynamicallyAccessedMembers(DataAnnotationsValidator.Members)] T>(
        this HostApplicationBuilder builder, string section, Action<IConfiguration, T> bind)
        where T : class
    {
        var configuration = builder.Configuration.GetSection(section);
        builder.Services.AddOptions<T>().Configure(options => bind(configuration, options)).ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<T>, DataAnnotationsValidator<T>>();
        builder.Services.AddSingleton(sp => sp.GetRequiredService<IOptions<T>>().Value);
        builder.Services.AddSingleton(new OptionsCheck(sp => _ = sp.GetRequiredService<IOptions<T>>().Value));
    }

    /// <summary>
    /// The client, its connection read now so a missing kubeconfig is one clear error before anything starts. Its
    /// requests carry the component's User-Agent and are counted in the metrics; their rate is limited by the
    /// component's <see cref="KubeClientOptions"/>.
    /// </summary>
    /// <param name="requestsOffWatchConnection">Requests other than watches on connections of their own (<see cref="RequestsOffWatchConnection"/>).</param>
    public static void AddKubernetesClient(this HostApplicationBuilder builder, string component, string? kubeconfig, bool requestsOffWatchConnection = false)
    {
        var connection = KubeClientConfiguration.Load(kubeconfig);
        builder.AddValidatedOptions<KubeClientOptions>(KubeClientOptions.Section, (section, options) =>
        {
            var defaults = KubeClientOptions.DefaultsFor(component);
            (options.Qps, options.Burst) = (defaults.Qps, defaults.Burst);
            section.Bind(options);
        });
        builder.Services.AddSingleton(sp =>
        {
            var limit = sp.GetRequiredService<KubeClientOptions>();
            var settings = new KubeApiSettings
            {
                Qps = limit.Qps > 0 ? limit.Qps : null,
                Burst = limit.Burst,
                Time = sp.GetRequiredService<TimeProvider>(),
                Logger = sp.GetRequiredService<ILoggerFactory>().CreateLogger("LbAllocator.Kubernetes.Client"),
            };
            var metrics = new ApiRequestMetrics(component, sp.GetRequiredService<IMetricFactory>());
            return requestsOffWatchConnection
                ? new KubeApi(connection, settings, metrics, new RequestsOffWatchConnection())
                : new KubeApi(connection, settings, metrics);
        });
    }

    /// <summary>
    /// Builds the host and validates the options now, in the order they were added (the status endpoint's first),
    /// so bad options are one clear error, not a failed start.
    /// </summary>
    public static IHost BuildValidated(this HostApplicationBuilder builder)
    {
        var host = builder.Build();
        foreach (var check in host.Services.GetServices<OptionsCheck>())
        {
            check.Resolve(host.Services);
        }

        return host;
    }

    /// <summary>Resolves one options type, which binds and validates it (and throws <see cref="OptionsValidationException"/>).</summary>
    private sealed record OptionsCheck(Action<IServiceProvider> Resolve);

    /// <summary>One line per log entry; JSON (one object per line, fields as properties) when asked for.</summary>
    private static void ConfigureLogging(ILoggingBuilder logging, string? format)
    {
        logging.ClearProviders();
        if (string.Equals(format, "json", StringComparison.OrdinalIgnoreCase))
        {
            logging.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                o.IncludeScopes = true;
                o.JsonWriterOptions = new System.Text.Json.JsonWriterOptions { Indented = false };
            });
        }
        else
        {
            logging.AddSimpleConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
                o.SingleLine = true;
                o.ColorBehavior = LoggerColorBehavior.Disabled;
            });
        }
    }
}
