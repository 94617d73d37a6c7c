using LbAllocator.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>Builds the speaker process: options validated at start, the Kubernetes client, lease, announcer, reconciler, metrics.</summary>
public static class SpeakerHost
{
    public const string Component = "speaker";

    /// <param name="settings">Option overrides from the command line, as "Speaker:NodeName" style keys.</param>
    public static IHost Build(IReadOnlyDictionary<string, string?> settings, Action<ILoggingBuilder>? logging = null)
    {
        var builder = ComponentHost.CreateBuilder(Component, settings, logging);
        builder.AddValidatedOptions<SpeakerOptions>(SpeakerOptions.Section, static (section, options) => section.Bind(options));
        // A short shutdown: withdraw and hand over, the DaemonSet's grace period is short too.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        builder.AddKubernetesClient(Component, settings.GetValueOrDefault($"{SpeakerOptions.Section}:{nameof(SpeakerOptions.Kubeconfig)}"), requestsOffWatchConnection: true);
        builder.Services.AddSingleton<SpeakerMetrics>();
        builder.Services.AddSingleton<SpeakerLease>();
        builder.Services.AddSingleton<Announcer>();
        builder.Services.AddSingleton<IAnnouncer>(services => services.GetRequiredService<Announcer>());
        builder.Services.AddSingleton<SpeakerReconciler>();
        builder.Services.AddHostedService<SpeakerService>();
        return builder.BuildValidated();
    }
}
