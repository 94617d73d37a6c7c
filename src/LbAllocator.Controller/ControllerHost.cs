using LbAllocator.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Controller;

/// <summary>Builds the controller process: options validated at start, the Kubernetes client, the reconciler, metrics.</summary>
public static class ControllerHost
{
    public const string Component = "controller";

    /// <param name="settings">Option overrides from the command line, as "Controller:Namespace" style keys.</param>
    public static IHost Build(IReadOnlyDictionary<string, string?> settings, Action<ILoggingBuilder>? logging = null)
    {
        var builder = ComponentHost.CreateBuilder(Component, settings, logging);
        builder.AddValidatedOptions<ControllerOptions>(ControllerOptions.Section, static (section, options) => section.Bind(options));
        // The controller writes in bursts (a status per Service): writes off the watches' connection.
        builder.AddKubernetesClient(Component, settings.GetValueOrDefault($"{ControllerOptions.Section}:{nameof(ControllerOptions.Kubeconfig)}"), requestsOffWatchConnection: true);
        builder.Services.AddSingleton<ControllerMetrics>();
        builder.Services.AddSingleton<Reconciler>();
        builder.Services.AddSingleton<NodeDigestFeed>();
        builder.Services.AddHostedService<ControllerService>();
        return builder.BuildValidated();
    }
}
