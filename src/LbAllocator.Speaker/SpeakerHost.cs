using k8s;
using LbAllocator.Kubernetes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LbAllocator.Speaker;

/// <summary>Builds the speaker process: options validated at start, the Kubernetes client, lease, announcer, reconciler.</summary>
public static class SpeakerHost
{
    /// <param name="settings">Option overrides from the command line, as "Speaker:NodeName" style keys.</param>
    public static IHost Build(IReadOnlyDictionary<string, string?> settings, Action<ILoggingBuilder>? logging = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
        builder.Configuration.AddInMemoryCollection(settings);
        logging?.Invoke(builder.Logging);
        builder.Services.AddOptions<SpeakerOptions>()
            .Bind(builder.Configuration.GetSection(SpeakerOptions.Section))
            .ValidateDataAnnotations() // includes SpeakerOptions.Validate (IValidatableObject)
            .ValidateOnStart();
        // A short shutdown: withdraw and hand over, the DaemonSet's grace period is short too.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        var client = new k8s.Kubernetes(KubeClientConfiguration.Load(settings.GetValueOrDefault($"{SpeakerOptions.Section}:{nameof(SpeakerOptions.Kubeconfig)}")));
        builder.Services.AddSingleton<IKubernetes>(client);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton(sp => sp.GetRequiredService<IOptions<SpeakerOptions>>().Value);
        builder.Services.AddSingleton<SpeakerLease>();
        builder.Services.AddSingleton<Announcer>();
        builder.Services.AddSingleton<SpeakerReconciler>();
        builder.Services.AddHostedService<SpeakerService>();
        var host = builder.Build();
        _ = host.Services.GetRequiredService<IOptions<SpeakerOptions>>().Value;
        return host;
    }
}
