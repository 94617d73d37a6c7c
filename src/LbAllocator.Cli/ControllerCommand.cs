using System.CommandLine;
using LbAllocator.Controller;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace LbAllocator.Cli;

/// <summary>`lballocator controller`: assigns addresses on a live cluster until stopped.</summary>
internal static class ControllerCommand
{
    public static Command Create(TextWriter stderr)
    {
        var kubeconfig = new Option<string?>("--kubeconfig") { Description = "Path to a kubeconfig (default: KUBECONFIG, ~/.kube/config, or in-cluster)" };
        var ns = new Option<string>("--namespace", "-n") { Description = "Namespace of the pools and the leader lease", DefaultValueFactory = _ => "lballocator-system" };
        var lbClass = new Option<string?>("--load-balancer-class") { Description = "Handle only Services with this spec.loadBalancerClass (default: only Services without one)" };
        var identity = new Option<string?>("--identity") { Description = "This replica's name in the leader lease (default: host name)" };
        var noElection = new Option<bool>("--no-leader-election") { Description = "Run without a leader lease (only ever one replica!)" };
        var logLevel = new Option<string>("--log-level") { Description = "Trace, Debug, Information, Warning or Error", DefaultValueFactory = _ => "Information" };
        logLevel.AcceptOnlyFromAmong("Trace", "Debug", "Information", "Warning", "Error");

        var command = new Command("controller", "Assign addresses to Services of type LoadBalancer on a cluster")
        {
            kubeconfig, ns, lbClass, identity, noElection, logLevel,
        };
        command.SetAction(async (result, cancellationToken) =>
        {
            var settings = new Dictionary<string, string?>
            {
                ["Controller:Namespace"] = result.GetValue(ns),
                ["Controller:Kubeconfig"] = result.GetValue(kubeconfig),
                ["Controller:LoadBalancerClass"] = result.GetValue(lbClass),
                ["Controller:LeaderElection"] = result.GetValue(noElection) ? "false" : "true",
                ["Logging:LogLevel:Default"] = result.GetValue(logLevel),
            };
            if (result.GetValue(identity) is { } id)
            {
                settings["Controller:Identity"] = id;
            }

            try
            {
                using var host = ControllerHost.Build(settings);
                await host.RunAsync(cancellationToken);
                return CliApp.Ok;
            }
            catch (OptionsValidationException e)
            {
                stderr.WriteLine($"lballocator controller: invalid options: {string.Join("; ", e.Failures)}");
                return CliApp.Usage;
            }
            catch (Exception e) when (e is k8s.Exceptions.KubeConfigException or FileNotFoundException)
            {
                stderr.WriteLine($"lballocator controller: cannot load the cluster configuration: {e.Message}");
                return CliApp.Invalid;
            }
        });
        return command;
    }
}
