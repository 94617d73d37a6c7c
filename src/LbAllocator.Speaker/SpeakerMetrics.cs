using LbAllocator.Core;
using Prometheus;

namespace LbAllocator.Speaker;

/// <summary>
/// The speaker's metrics. Per-address packet counts live in the announcer (plain counters on the answering
/// path) and are copied into the registry when /metrics is read.
/// </summary>
public sealed class SpeakerMetrics
{
    private readonly Gauge _announced;
    private readonly Gauge _owned;
    private readonly Counter _requests;
    private readonly Counter _replies;
    private readonly Counter _gratuitous;
    private readonly Counter _renewFailures;
    private readonly Counter _ownershipChanges;
    private readonly Gauge _alive;
    private readonly Gauge _members;
    private readonly Counter _conflicts;
    private readonly Counter _defended;
    private readonly Counter _rejected;
    private readonly HashSet<string> _exported = new(StringComparer.Ordinal);

    public SpeakerMetrics(IMetricFactory factory, CollectorRegistry registry, IAnswerer announcer)
    {
        _announced = factory.CreateGauge("lballocator_speaker_addresses_announced", "Addresses this node answers for.");
        _owned = factory.CreateGauge("lballocator_speaker_owned_addresses", "Addresses this node won the election for and answers for, by family, labelled with the node.", ["node", "family"]);
        _requests = factory.CreateCounter("lballocator_speaker_requests_received_total", "ARP requests and Neighbor Solicitations received for an address this node announces.", ["address", "protocol"]);
        _replies = factory.CreateCounter("lballocator_speaker_replies_sent_total", "ARP replies and Neighbor Advertisements sent, by address.", ["address", "protocol"]);
        _gratuitous = factory.CreateCounter("lballocator_speaker_gratuitous_sent_total", "Gratuitous ARP and unsolicited Neighbor Advertisement packets sent, by address.", ["address"]);
        _renewFailures = factory.CreateCounter("lballocator_speaker_lease_renew_failures_total", "Speaker lease renewals that failed.");
        _ownershipChanges = factory.CreateCounter("lballocator_speaker_ownership_changes_total", "Addresses this node started (acquired) or stopped (released) announcing.", ["change"]);
        _conflicts = factory.CreateCounter("lballocator_speaker_address_conflicts_total", "Times a probe or an announcement found an address this node should announce claimed by a host that is not a speaker.");
        _defended = factory.CreateCounter("lballocator_speaker_addresses_defended_total", "Times another MAC announced an address this node answers, and this node announced it again.");
        _rejected = factory.CreateCounter("lballocator_speaker_heartbeats_rejected_total", "Speaker messages (heartbeats and membership changes) dropped unread, by reason: malformed, unknown_key (signed with a key this speaker lacks), bad_tag (forged or altered).", ["reason"]);
        _alive = factory.CreateGauge("lballocator_speaker_alive", "1 while this speaker is a member of its segment and may answer.");
        _members = factory.CreateGauge("lballocator_speaker_lan_members", "Speakers alive in this node's view of its segment, itself included while it is a member.");
        registry.AddBeforeCollectCallback(() => Export(announcer.Counters()));
    }

    public void RenewFailed() => _renewFailures.Inc();

    public void ConflictDetected() => _conflicts.Inc();

    public void AddressDefended() => _defended.Inc();

    public void LanMessageRejected(Lan.LanRead why) => _rejected.WithLabels(why switch
    {
        Lan.LanRead.UnknownKey => "unknown_key",
        Lan.LanRead.BadTag => "bad_tag",
        _ => "malformed",
    }).Inc();

    public void SetAlive(bool alive) => _alive.Set(alive ? 1 : 0);

    public void SetLanMembers(int members) => _members.Set(members);

    /// <summary>The addresses this node owns after a pass; both families are always exported, 0 when none.</summary>
    public void SetOwned(string node, IEnumerable<Ip> owned)
    {
        var v4 = owned.Count(ip => ip.Family == IpFamily.IPv4);
        var all = owned.Count();
        _owned.WithLabels(node, "ipv4").Set(v4);
        _owned.WithLabels(node, "ipv6").Set(all - v4);
    }

    public void OwnershipChanged(int acquired, int released)
    {
        _ownershipChanges.WithLabels("acquired").Inc(acquired);
        _ownershipChanges.WithLabels("released").Inc(released);
    }

    /// <summary>Copies the announcer's per-address counts into the registry (before each scrape).</summary>
    internal void Export(IReadOnlyDictionary<Ip, AddressCounters> counters)
    {
        lock (_exported)
        {
            _announced.Set(counters.Count);
            var now = counters.Keys.Select(ip => ip.ToString()).ToHashSet(StringComparer.Ordinal);
            foreach (var gone in _exported.Except(now).ToList())
            {
                foreach (var protocol in new[] { "arp", "ndp" })
                {
                    _requests.RemoveLabelled(gone, protocol);
                    _replies.RemoveLabelled(gone, protocol);
                }

                _gratuitous.RemoveLabelled(gone);
                _exported.Remove(gone);
            }

            foreach (var (ip, c) in counters)
            {
                var address = ip.ToString();
                var protocol = ip.Family == IpFamily.IPv4 ? "arp" : "ndp";
                _exported.Add(address);
                Follow(_requests, c.Requests, address, protocol);
                Follow(_replies, c.Replies, address, protocol);
                Follow(_gratuitous, c.Gratuitous, address);
            }
        }
    }

    /// <summary>
    /// Sets a series to a count. A count below the series is a reset (the address was given up and taken
    /// again between two scrapes): the series starts over too, as Prometheus expects of a counter.
    /// </summary>
    private static void Follow(Counter counter, long count, params string[] labels)
    {
        if (counter.WithLabels(labels).Value > count)
        {
            counter.RemoveLabelled(labels);
        }

        counter.WithLabels(labels).IncTo(count);
    }
}
