using k8s;
using LbAllocator.Kubernetes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LbAllocator.Controller;

/// <summary>Builds the controller process: options validated at start, the Kubernetes client, the reconciler.</summary>
public static class ControllerHost
{
    /// <param name="settings">Option overrides from the command line, as "Controller:Namespace" style keys.</param>
    public static IHost Build(IReadOnlyDictionary<string, string?> settings, Action<ILoggingBuilder>? logging = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = false, Args = [] });
        builder.Configuration.AddInMemoryCollection(settings);
        logging?.Invoke(builder.Logging);
        builder.Services.AddOptions<ControllerOptions>()
            .Bind(builder.Configuration.GetSection(ControllerOptions.Section))
            .ValidateDataAnnotations() // includes ControllerOptions.Validate (IValidatableObject)
            .ValidateOnStart();
        // Loaded before the host starts, so a missing kubeconfig is one clear error, not a failed start.
        var client = new k8s.Kubernetes(KubeClientConfiguration.Load(settings.GetValueOrDefault($"{ControllerOptions.Section}:{nameof(ControllerOptions.Kubeconfig)}")));
        builder.Services.AddSingleton<IKubernetes>(client);
        builder.Services.AddSingleton(sp => new Reconciler(
            sp.GetRequiredService<IKubernetes>(), sp.GetRequiredService<IOptions<ControllerOptions>>().Value, sp.GetRequiredService<ILoggerFactory>()));
        builder.Services.AddHostedService<ControllerService>();
        var host = builder.Build();
        // Validate now, so bad options are one clear error before anything starts (and logs a failed start).
        _ = host.Services.GetRequiredService<IOptions<ControllerOptions>>().Value;
        return host;
    }
}
