using System.CommandLine;
using LbAllocator.Controller;

namespace LbAllocator.Cli;

/// <summary>`lballocator controller`: assigns addresses on a live cluster until stopped.</summary>
internal static class ControllerCommand
{
    public static Command Create(TextWriter stderr)
    {
        var common = new HostCommand.CommonOptions("Controller", "0.0.0.0:8080");
        var ns = new Option<string>("--namespace", "-n") { Description = "Namespace of the pools and the leader lease", DefaultValueFactory = _ => "lballocator-system" };
        var lbClass = new Option<string?>("--load-balancer-class") { Description = "Handle only Services with this spec.loadBalancerClass (default: only Services without one)" };
        var identity = new Option<string?>("--identity") { Description = "This replica's name in the leader lease (default: host name)" };
        var noElection = new Option<bool>("--no-leader-election") { Description = "Run without a leader lease (only ever one replica!)" };
        var metalLb = new Option<bool>("--accept-metallb-annotations")
        {
            Description = "Also read MetalLB's Service annotations (metallb.io/ and metallb.universe.tf/ loadBalancerIPs, address-pool, allow-shared-ip) where ours are absent",
        };

        var command = new Command("controller", "Assign addresses to Services of type LoadBalancer on a cluster")
        {
            ns, lbClass, identity, noElection, metalLb,
        };
        common.AddTo(command);
        command.SetAction(async (result, cancellationToken) =>
        {
            var settings = common.Settings(result);
            settings["Controller:Namespace"] = result.GetValue(ns);
            settings["Controller:LoadBalancerClass"] = result.GetValue(lbClass);
            settings["Controller:LeaderElection"] = result.GetValue(noElection) ? "false" : "true";
            settings["Controller:AcceptMetalLbAnnotations"] = result.GetValue(metalLb) ? "true" : "false";
            if (result.GetValue(identity) is { } id)
            {
                settings["Controller:Identity"] = id;
            }

            return await HostCommand.RunAsync("controller", () => ControllerHost.Build(settings), stderr, cancellationToken);
        });
        return command;
    }
}
