using System.Text.RegularExpressions;
using LbAllocator.Core;

namespace LbAllocator.Speaker;

/// <summary>A ServiceL2Status as the plan needs it: its name, the Service it is about, and the node it names.</summary>
public readonly record struct StatusView(string Name, string ServiceKey, string? Node);

/// <summary>A Service this node announces: its addresses and the interfaces it answers on.</summary>
public sealed record Ours(IReadOnlyList<Ip> Addresses, IReadOnlyList<string> Interfaces)
{
    /// <summary>The addresses as logs and events show them ("192.0.2.1, 2001:db8::1").</summary>
    public string AddressText => string.Join(", ", Addresses);

    public string InterfaceText => string.Join(", ", Interfaces);
}

/// <summary>
/// An event on a Service, decided by the plan and sent by the status writer; for an event on this Node, ServiceKey is
/// "node/NAME". Each topic's last event is sent once; conflicts have a topic of their own, so they do not reset the
/// announcement's.
/// </summary>
public sealed record PlannedEvent(string ServiceKey, string Type, string Reason, string Message, string Topic = PlannedEvent.AnnounceTopic)
{
    public const string AnnounceTopic = "announce";
    public const string ConflictTopic = "conflict";
    public const string VerifyTopic = "verify";
    public const string DefendTopic = "defend";
}

/// <summary>
/// What this node does, decided without I/O from the election, this node's interfaces and the
/// ServiceL2Statuses seen: the addresses it answers for (applied to the announcer first), and what to
/// tell the API (statuses to write and delete, events), which the status writer does afterwards.
/// </summary>
/// <param name="Owned">Address to the interfaces it is answered on.</param>
/// <param name="Announced">Service key to what this node announces for it.</param>
/// <param name="Failed">Services this node won but cannot announce, with the event message.</param>
/// <param name="NotAnnounced">Services nobody announces, with the event message; only the janitor (see <see cref="Make"/>) reports them.</param>
/// <param name="StaleStatuses">ServiceL2Statuses to delete.</param>
public sealed record SpeakerPlan(
    IReadOnlyDictionary<Ip, string[]> Owned,
    IReadOnlyDictionary<string, Ours> Announced,
    IReadOnlyDictionary<string, string> Failed,
    IReadOnlyDictionary<string, string> NotAnnounced,
    IReadOnlyList<string> StaleStatuses)
{
    public static readonly SpeakerPlan Empty = new(
        new Dictionary<Ip, string[]>(), new Dictionary<string, Ours>(), new Dictionary<string, string>(), new Dictionary<string, string>(), []);

    /// <param name="node">This node.</param>
    /// <param name="standing">
    /// Whether this node stands for election. One that does not (it cannot answer, is fenced or warming up) sees a view
    /// it does not act on (cut off, it may count everyone dead), so it deletes none of its statuses.
    /// </param>
    /// <param name="janitor">
    /// Whether this node tidies up for everyone (one live speaker does): deletes the statuses of Services
    /// nobody announces, and says why nobody does.
    /// </param>
    /// <param name="statuses">The ServiceL2Statuses that exist.</param>
    public static SpeakerPlan Make(
        string node, ElectionTable election, bool standing, bool janitor, IEnumerable<StatusView> statuses, IReadOnlyList<NetworkInterfaceInfo> interfaces, Regex exclude)
    {
        var owned = new Dictionary<Ip, string[]>();
        var announced = new Dictionary<string, Ours>(StringComparer.Ordinal);
        var failed = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var decision in election.WonBy(node))
        {
            var on = InterfacesFor(decision, interfaces, exclude, out var why);
            if (on.Length == 0)
            {
                failed[decision.ServiceKey] = $"node {node} won the election for {Join(decision.Addresses)} but cannot announce it: {why}";
                continue;
            }

            announced[decision.ServiceKey] = new Ours(decision.Addresses, on);
            foreach (var ip in decision.Addresses)
            {
                owned[ip] = on;
            }
        }

        var notAnnounced = janitor
            ? election.NotAnnounced().ToDictionary(d => d.ServiceKey, d => $"no node announces {Join(d.Addresses)}: {d.Reason}", StringComparer.Ordinal)
            : new Dictionary<string, string>(StringComparer.Ordinal);

        // This node's own statuses for Services it no longer announces, unless another node takes them over (that node
        // rewrites the status: one write, not a delete and a create). And, for the janitor, those of Services that are
        // gone or announced by nobody.
        var stale = statuses.Where(s => IsStale(s, election.Get(s.ServiceKey)?.Node)).Select(s => s.Name).ToList();
        return new SpeakerPlan(owned, announced, failed, notAnnounced, stale);

        bool IsStale(StatusView status, string? owner) => status.Node == node
            ? standing && !announced.ContainsKey(status.ServiceKey) && (owner is null || owner == node)
            : janitor && owner is null;
    }

    /// <summary>
    /// The events that telling the change from <paramref name="previous"/> takes: each state is reported once, when it
    /// starts. That a Service is announced is told by the effects (<see cref="Assigned"/>), once an address of it is
    /// answered: a probe or a conflict may hold it back.
    /// </summary>
    public IEnumerable<PlannedEvent> EventsSince(SpeakerPlan previous)
    {
        foreach (var (key, message) in Failed.Where(kv => previous.Failed.GetValueOrDefault(kv.Key) != kv.Value))
        {
            yield return new PlannedEvent(key, "Warning", "AnnounceFailed", message);
        }

        foreach (var (key, message) in NotAnnounced.Where(kv => previous.NotAnnounced.GetValueOrDefault(kv.Key) != kv.Value))
        {
            yield return new PlannedEvent(key, "Warning", "NotAnnounced", message);
        }
    }

    /// <summary>The event that <paramref name="node"/> announces a Service.</summary>
    public static PlannedEvent Assigned(string key, Ours ours, string node) =>
        new(key, "Normal", "nodeAssigned", $"announcing {ours.AddressText} from node {node} ({ours.InterfaceText})");

    /// <summary>Services this node announces and did not in <paramref name="previous"/>.</summary>
    public IEnumerable<KeyValuePair<string, Ours>> StartedSince(SpeakerPlan previous) => Announced.Where(kv => !previous.Announced.ContainsKey(kv.Key));

    /// <summary>Services this node announced in <paramref name="previous"/> and no longer does.</summary>
    public IEnumerable<string> StoppedSince(SpeakerPlan previous) => previous.Announced.Keys.Where(k => !Announced.ContainsKey(k));

    private static string Join(IEnumerable<Ip> addresses) => string.Join(", ", addresses);

    /// <summary>
    /// The interfaces this node announces on, where it keeps a capture open and sends heartbeats whether it owns
    /// anything or not: those the advertisements name, and every usable one if any advertisement names none.
    /// Named ones that are missing or cannot carry ARP/NDP come back as problems, with why.
    /// </summary>
    public static (IReadOnlyList<string> Interfaces, IReadOnlyDictionary<string, string> Problems) ListenOn(
        IEnumerable<IReadOnlyList<string>> advertised, IReadOnlyList<NetworkInterfaceInfo> interfaces, Regex exclude)
    {
        var listen = new SortedSet<string>(StringComparer.Ordinal);
        var problems = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var named in advertised)
        {
            if (named.Count == 0)
            {
                listen.UnionWith(interfaces.Where(i => i.Unusable(exclude) is null).Select(i => i.Name));
            }

            foreach (var name in named)
            {
                var found = interfaces.FirstOrDefault(i => i.Name == name);
                if (found?.CanCarryWhenNamed == true)
                {
                    listen.Add(name);
                }
                else
                {
                    problems[name] = found is null ? "not found" : found.Unusable(exclude) ?? "unusable";
                }
            }
        }

        foreach (var name in listen)
        {
            problems.Remove(name);
        }

        return ([.. listen], problems);
    }

    /// <summary>The interfaces to announce on: the advertisements' named ones, else every usable one.</summary>
    private static string[] InterfacesFor(Announcement decision, IReadOnlyList<NetworkInterfaceInfo> interfaces, Regex exclude, out string why)
    {
        if (decision.Interfaces.Count == 0)
        {
            var usable = interfaces.Where(i => i.Unusable(exclude) is null).Select(i => i.Name).ToArray();
            why = usable.Length > 0 ? "" : "no usable interface on this node ("
                + (interfaces.Count == 0 ? "none found" : string.Join(", ", interfaces.Select(i => $"{i.Name}: {i.Unusable(exclude) ?? "usable"}"))) + ")";
            return usable;
        }

        var named = decision.Interfaces.Where(n => interfaces.Any(i => i.Name == n && i.CanCarryWhenNamed)).ToArray();
        why = named.Length > 0 ? "" : $"none of the interfaces its L2Advertisements name ({string.Join(", ", decision.Interfaces)}) is up and able to carry ARP/NDP on this node";
        return named;
    }
}
