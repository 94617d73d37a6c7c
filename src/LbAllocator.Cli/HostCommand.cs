using System.CommandLine;
using LbAllocator.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace LbAllocator.Cli;

/// <summary>What the long-running verbs (controller, speaker) share: common options and how a host is run.</summary>
internal static class HostCommand
{
    /// <summary>The options every long-running verb has: cluster access, logging and the status endpoint.</summary>
    internal sealed class CommonOptions(string section, string defaultStatusAddress)
    {
        public Option<string?> Kubeconfig { get; } = new("--kubeconfig") { Description = "Path to a kubeconfig (default: KUBECONFIG, ~/.kube/config, or in-cluster)" };

        public Option<string> LogLevel { get; } = Choice("--log-level", "Information", "Trace, Debug, Information, Warning or Error", "Trace", "Debug", "Information", "Warning", "Error");

        public Option<string> LogFormat { get; } = Choice("--log-format", "text", "text (one line per entry) or json (one object per line, fields as properties)", "text", "json");

        public Option<string> StatusAddress { get; } = new("--status-address")
        {
            Description = "IP:port serving /metrics, /healthz and /readyz",
            DefaultValueFactory = _ => defaultStatusAddress,
        };

        public Option<double?> KubeApiQps { get; } = new("--kube-api-qps") { Description = "Requests a second to the API server, sustained (0: no client-side limit; default: the component's)" };

        public Option<int?> KubeApiBurst { get; } = new("--kube-api-burst") { Description = "Requests to the API server that may start at once (default: the component's)" };

        public void AddTo(Command command)
        {
            command.Options.Add(Kubeconfig);
            command.Options.Add(KubeApiQps);
            command.Options.Add(KubeApiBurst);
            command.Options.Add(LogLevel);
            command.Options.Add(LogFormat);
            command.Options.Add(StatusAddress);
        }

        /// <summary>These options as host settings; the verb adds its own.</summary>
        public Dictionary<string, string?> Settings(ParseResult result) => new()
        {
            [$"{section}:Kubeconfig"] = result.GetValue(Kubeconfig),
            ["Logging:LogLevel:Default"] = result.GetValue(LogLevel),
            [ComponentHost.LogFormatKey] = result.GetValue(LogFormat),
            [$"{StatusOptions.Section}:{nameof(StatusOptions.Address)}"] = result.GetValue(StatusAddress),
            [$"{KubeClientOptions.Section}:{nameof(KubeClientOptions.Qps)}"] = result.GetValue(KubeApiQps)?.ToString(System.Globalization.CultureInfo.InvariantCulture),
            [$"{KubeClientOptions.Section}:{nameof(KubeClientOptions.Burst)}"] = result.GetValue(KubeApiBurst)?.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };

        private static Option<string> Choice(string name, string defaultValue, string description, params string[] values)
        {
            var option = new Option<string>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
            option.AcceptOnlyFromAmong(values);
            return option;
        }
    }

    /// <summary>
    /// Runs the host until stopped. Bad options (exit 2), an unreadable kubeconfig or a status port in use
    /// (exit 1) are one line on stderr.
    /// </summary>
    public static async Task<int> RunAsync(string verb, Func<IHost> build, TextWriter stderr, CancellationToken cancellationToken)
    {
        try
        {
            using var host = build();
            await host.RunAsync(cancellationToken);
            return CliApp.Ok;
        }
        catch (OptionsValidationException e)
        {
            stderr.WriteLine($"lballocator {verb}: invalid options: {string.Join("; ", e.Failures)}");
            return CliApp.Usage;
        }
        catch (Exception e) when (e is LbAllocator.Kubernetes.Client.KubeConfigException or FileNotFoundException)
        {
            stderr.WriteLine($"lballocator {verb}: cannot load the cluster configuration: {e.Message}");
            return CliApp.Invalid;
        }
        catch (StatusEndpointException e)
        {
            stderr.WriteLine($"lballocator {verb}: cannot serve the status endpoint (--status-address): {e.Message}");
            return CliApp.Invalid;
        }
    }
}
