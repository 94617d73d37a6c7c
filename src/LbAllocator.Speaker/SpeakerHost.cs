using LbAllocator.Hosting;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Speaker.Capture;
using LbAllocator.Speaker.Lan;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// Builds the speaker process: options validated at start, the Kubernetes client, the inputs, the captures and what
/// reads their frames (the LAN membership's transport, the address watch, the answerer), the effects, the reconciler.
/// </summary>
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
        var services = builder.Services;
        services.AddSingleton<SpeakerMetrics>();
        services.AddSingleton<SpeakerLease>();
        services.AddSingleton<Captures>();
        services.AddSingleton(sp => new AddressWatch(sp.GetRequiredService<Captures>()));
        services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<SpeakerOptions>();
            return new Membership(options.NodeName, options.HeartbeatInterval, options.DeadInterval, sp.GetRequiredService<TimeProvider>());
        });
        services.AddSingleton<LanTransport>();
        services.AddSingleton(sp => new ClusterKey(
            ClusterKey.From(sp.GetRequiredService<KubeApi>(), sp.GetRequiredService<SpeakerOptions>().Namespace), sp.GetRequiredService<LanTransport>(),
            sp.GetRequiredService<Health>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<ClusterKey>>()));
        services.AddSingleton(sp =>
        {
            var membership = sp.GetRequiredService<Membership>();
            var time = sp.GetRequiredService<TimeProvider>();
            return new Announcer(sp.GetRequiredService<Captures>(), () => time.GetTimestamp() < membership.GateOpenUntil);
        });
        services.AddSingleton<IAnswerer>(sp => sp.GetRequiredService<Announcer>());
        services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<SpeakerOptions>();
            var logger = sp.GetRequiredService<ILoggerFactory>().CreateLogger("LbAllocator.Speaker.Watch");
            return new SpeakerInputs(SpeakerSources.Of(sp.GetRequiredService<KubeApi>(), options.Namespace, logger), options, logger);
        });
        services.AddSingleton(sp => new L2StatusWriter(
            sp.GetRequiredService<KubeApi>(), sp.GetRequiredService<SpeakerOptions>(), sp.GetRequiredService<SpeakerInputs>().Statuses,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<L2StatusWriter>>()));
        services.AddSingleton(sp => new SpeakerEffects(
            sp.GetRequiredService<Announcer>(), sp.GetRequiredService<AddressWatch>(), sp.GetRequiredService<L2StatusWriter>(), sp.GetRequiredService<SpeakerMetrics>(),
            sp.GetRequiredService<SpeakerOptions>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<SpeakerEffects>>()));
        services.AddSingleton(sp => new Verifier(
            sp.GetRequiredService<SpeakerOptions>().NodeName, sp.GetRequiredService<AddressWatch>(), sp.GetRequiredService<Captures>(), sp.GetRequiredService<L2StatusWriter>(),
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<Verifier>>()));
        services.AddSingleton(sp => new SpeakerReadiness(
            sp.GetRequiredService<SpeakerOptions>(), sp.GetRequiredService<Health>(), sp.GetRequiredService<SpeakerMetrics>(), sp.GetRequiredService<L2StatusWriter>(),
            sp.GetRequiredService<ILogger<SpeakerReadiness>>()));
        services.AddSingleton(sp =>
        {
            var lease = sp.GetRequiredService<SpeakerLease>();
            var captures = sp.GetRequiredService<Captures>();
            var watch = sp.GetRequiredService<AddressWatch>();
            // Frames of ARP and NDP: claims and answers heard first, then answered.
            captures.Neighbors = [watch, sp.GetRequiredService<Announcer>()];
            var reconciler = new SpeakerReconciler(
                sp.GetRequiredService<SpeakerInputs>(), sp.GetRequiredService<SpeakerOptions>(), sp.GetRequiredService<Membership>(),
                sp.GetRequiredService<LanTransport>().ReadBeats, captures, sp.GetRequiredService<SpeakerEffects>(), sp.GetRequiredService<Verifier>(),
                sp.GetRequiredService<SpeakerReadiness>(), sp.GetRequiredService<SpeakerMetrics>(), new SpeakerApi(lease.OthersRenewingAsync, lease.SetCannotAnswer),
                sp.GetRequiredService<Health>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<SpeakerReconciler>>());
            watch.AddressClaimed += reconciler.OnClaim;
            lease.Recovered += reconciler.ApiRecovered;
            return reconciler;
        });
        services.AddHostedService<SpeakerService>();
        return builder.BuildValidated();
    }
}
