using System.CommandLine;
using LbAllocator.Controller;

namespace LbAllocator.Cli;

/// <summary>`lballocator controller`: assigns addresses on a live cluster until stopped.</summary>
internal static class ControllerCommand
{
    public static Command Create(TextWriter stderr)
    {
        var kubeconfig = HostCommand.Kubeconfig();
        var ns = new Option<string>("--namespace", "-n") { Description = "Namespace of the pools and the leader lease", DefaultValueFactory = _ => "lballocator-system" };
        var lbClass = new Option<string?>("--load-balancer-class") { Description = "Handle only Services with this spec.loadBalancerClass (default: only Services without one)" };
        var identity = new Option<string?>("--identity") { Description = "This replica's name in the leader lease (default: host name)" };
        var noElection = new Option<bool>("--no-leader-election") { Description = "Run without a leader lease (only ever one replica!)" };
        var logLevel = HostCommand.LogLevel();

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

            return await HostCommand.RunAsync("controller", () => ControllerHost.Build(settings), stderr, cancellationToken);
        });
        return command;
    }
}
