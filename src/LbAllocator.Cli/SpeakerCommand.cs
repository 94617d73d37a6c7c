using System.CommandLine;
using System.Globalization;
using LbAllocator.Speaker;

namespace LbAllocator.Cli;

/// <summary>`lballocator speaker`: announces this node's share of the addresses until stopped.</summary>
internal static class SpeakerCommand
{
    public static Command Create(TextWriter stderr)
    {
        var defaults = new SpeakerOptions();
        var common = new HostCommand.CommonOptions("Speaker", "0.0.0.0:7472");
        var ns = new Option<string>("--namespace", "-n") { Description = "Namespace of the pools, advertisements and speaker leases", DefaultValueFactory = _ => defaults.Namespace };
        var node = new Option<string?>("--node") { Description = "This node's name (default: the NODE_NAME environment variable)" };
        var lbClass = new Option<string?>("--load-balancer-class") { Description = "Announce only Services with this spec.loadBalancerClass (default: only Services without one)" };
        var leaseDuration = Seconds("--lease-duration", "Seconds a speaker's lease counts as renewed after its last renewal (only a speaker that hears nobody on the LAN asks)", defaults.LeaseDuration);
        var renewInterval = Seconds("--renew-interval", "Seconds between lease renewals (one API write per node each time)", defaults.RenewInterval);
        var heartbeatInterval = Seconds("--heartbeat-interval", "Seconds between heartbeats to each ring neighbour, on each interface announced on", defaults.HeartbeatInterval);
        var deadInterval = Seconds("--dead-interval", "Seconds without a heartbeat after which its ring neighbours suspect a speaker (dead once most of them do)", defaults.DeadInterval);
        var garpCount = new Option<int>("--gratuitous-count") { Description = "Gratuitous ARP / unsolicited NA rounds on taking an address over", DefaultValueFactory = _ => defaults.GratuitousCount };
        var garpInterval = Seconds("--gratuitous-interval", "Seconds between gratuitous rounds", defaults.GratuitousInterval);
        var garpRefresh = Seconds("--gratuitous-refresh-interval", "Seconds between gratuitous announcements of each owned address, the addresses spread evenly over them (0: off)", defaults.GratuitousRefreshInterval);
        var apiTimeout = Seconds("--api-timeout", "Seconds any status or event write may take (they never hold up answering)", defaults.ApiTimeout);
        var exclude = new Option<string>("--exclude-interfaces") { Description = "Regular expression of interfaces not used unless an L2Advertisement names them", DefaultValueFactory = _ => defaults.ExcludeInterfaces };

        var command = new Command("speaker", "Announce assigned addresses by ARP and NDP from this node (run on every node, host network)")
        {
            ns, node, lbClass, leaseDuration, renewInterval, heartbeatInterval, deadInterval, garpCount, garpInterval, garpRefresh, apiTimeout, exclude,
        };
        common.AddTo(command);
        command.SetAction(async (result, cancellationToken) =>
        {
            var settings = common.Settings(result);
            settings["Speaker:Namespace"] = result.GetValue(ns);
            settings["Speaker:NodeName"] = result.GetValue(node) ?? Environment.GetEnvironmentVariable("NODE_NAME");
            settings["Speaker:LoadBalancerClass"] = result.GetValue(lbClass);
            settings["Speaker:LeaseDuration"] = Span(result.GetValue(leaseDuration));
            settings["Speaker:RenewInterval"] = Span(result.GetValue(renewInterval));
            settings["Speaker:HeartbeatInterval"] = Span(result.GetValue(heartbeatInterval));
            settings["Speaker:DeadInterval"] = Span(result.GetValue(deadInterval));
            settings["Speaker:GratuitousCount"] = result.GetValue(garpCount).ToString(CultureInfo.InvariantCulture);
            settings["Speaker:GratuitousInterval"] = Span(result.GetValue(garpInterval));
            settings["Speaker:GratuitousRefreshInterval"] = Span(result.GetValue(garpRefresh));
            settings["Speaker:ApiTimeout"] = Span(result.GetValue(apiTimeout));
            settings["Speaker:ExcludeInterfaces"] = result.GetValue(exclude);
            return await HostCommand.RunAsync("speaker", () => SpeakerHost.Build(settings), stderr, cancellationToken);
        });
        return command;
    }

    private static Option<double> Seconds(string name, string description, TimeSpan defaultValue) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue.TotalSeconds };

    private static string Span(double seconds) => TimeSpan.FromSeconds(seconds).ToString("c", CultureInfo.InvariantCulture);
}
