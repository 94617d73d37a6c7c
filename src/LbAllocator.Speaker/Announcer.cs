using System.Collections.Frozen;
using System.Net.NetworkInformation;
using LbAllocator.Core;
using LbAllocator.Speaker.Capture;

namespace LbAllocator.Speaker;

/// <summary>What the decisions make this node answer: the owned addresses, and gratuitous announcements of them.</summary>
public interface IAnswerer
{
    /// <summary>
    /// Makes the owned addresses exactly <paramref name="owned"/> (address to the interfaces it is announced
    /// on). Returns the (address, interface) pairs that are new, which the caller announces gratuitously.
    /// </summary>
    IReadOnlyList<(Ip Address, string Interface)> SetOwned(IReadOnlyDictionary<Ip, string[]> owned);

    /// <summary>The addresses answered for now.</summary>
    IReadOnlyCollection<Ip> OwnedAddresses { get; }

    /// <summary>One round of gratuitous announcements; false, and nothing sent, when the address is no longer owned there.</summary>
    bool AnnounceGratuitously(Ip address, string interfaceName);

    /// <summary>The packet counts of each address owned now.</summary>
    IReadOnlyDictionary<Ip, AddressCounters> Counters();
}

/// <summary>
/// Answers ARP and NDP for the addresses this node owns, on the interfaces chosen for each, and sends gratuitous
/// announcements of them. It answers only while the membership says it may (<c>mayAnswer</c>, read for every
/// request): a speaker frozen or cut off stops answering by itself, before its neighbours can count it dead. For
/// each owned IPv6 address it joins the address's solicited-node group on the interface, and sends Neighbor
/// Advertisements from the interface's link-local address.
/// </summary>
public sealed class Announcer : IAnswerer, IFrameReader, IDisposable
{
    private readonly Captures _captures;
    private readonly Func<bool> _mayAnswer;
    private readonly Lock _lock = new();
    private volatile FrozenDictionary<Ip, Owned> _owned = FrozenDictionary<Ip, Owned>.Empty;
    private int _addressChanges; // the kernel's address changes reported so far: a link-local read before the last one is stale

    /// <param name="mayAnswer">Whether this node may answer now: the membership's gate.</param>
    public Announcer(Captures captures, Func<bool> mayAnswer)
    {
        _captures = captures;
        _mayAnswer = mayAnswer;
        captures.Reopened += OnReopened;
        NetworkChange.NetworkAddressChanged += OnAddressChanged;
    }

    /// <summary>The addresses answered for now (a snapshot: SetOwned swaps in a new set).</summary>
    public IReadOnlyCollection<Ip> OwnedAddresses => _owned.Keys;

    public IReadOnlyList<(Ip Address, string Interface)> SetOwned(IReadOnlyDictionary<Ip, string[]> owned)
    {
        lock (_lock)
        {
            var open = _captures.Open;
            var previous = _owned;
            var usable = owned
                .Select(kv => (kv.Key, Interfaces: kv.Value.Where(i => open.Any(c => c.Name == i)).ToArray()))
                .Where(x => x.Interfaces.Length > 0)
                .ToFrozenDictionary(x => x.Key, x => new Owned(x.Interfaces, previous.TryGetValue(x.Key, out var before) ? before.Counters : new AddressCounters()));
            _owned = usable;
            var changes = Volatile.Read(ref _addressChanges);
            foreach (var capture in open)
            {
                var v6 = usable.Where(kv => kv.Key.Family == IpFamily.IPv6 && kv.Value.Interfaces.Contains(capture.Name, StringComparer.Ordinal)).ToList();
                capture.Groups.JoinExactly([.. v6.Select(kv => Frames.SolicitedNodeGroup(kv.Key))]);
                capture.LinkLocal.Read(changes, advertising: v6.Count > 0);
            }

            return [.. usable.SelectMany(kv => kv.Value.Interfaces
                .Where(i => !(previous.TryGetValue(kv.Key, out var before) && before.Interfaces.Contains(i, StringComparer.Ordinal)))
                .Select(i => (kv.Key, i)))];
        }
    }

    /// <summary>The packet counts of each address owned now; an address given up starts again from zero.</summary>
    public IReadOnlyDictionary<Ip, AddressCounters> Counters() => _owned.ToDictionary(kv => kv.Key, kv => kv.Value.Counters);

    /// <summary>
    /// One round of gratuitous announcements for an address on an interface: ARP request and reply, or an unsolicited
    /// NA. False, and nothing sent, when the address is no longer owned there; nothing sent, but true, while this node
    /// may not answer (a later round goes out once it may).
    /// </summary>
    public bool AnnounceGratuitously(Ip address, string interfaceName)
    {
        if (OwnedOn(address, interfaceName) is not { } counters || _captures[interfaceName] is not { } capture)
        {
            return false;
        }

        if (!_mayAnswer())
        {
            return true;
        }

        if (address.Family == IpFamily.IPv6)
        {
            // It may have come (DAD done) or gone since the last pass; the refresh asks for one address after another.
            capture.LinkLocal.ReadIfStale(Volatile.Read(ref _addressChanges));
        }

        byte[][] frames = address.Family == IpFamily.IPv4
            ? [Frames.GratuitousArp(address, capture.MacBytes, reply: false), Frames.GratuitousArp(address, capture.MacBytes, reply: true)]
            : [Frames.UnsolicitedAdvertisement(address, capture.MacBytes, capture.LinkLocal.Address)];
        foreach (var frame in frames)
        {
            if (capture.Send(frame))
            {
                Interlocked.Increment(ref counters.GratuitousSent);
            }
            else
            {
                _captures.SendFailed();
            }
        }

        return true;
    }

    /// <summary>An ARP request or Neighbor Solicitation for an owned address, answered on the capture thread without allocating.</summary>
    void IFrameReader.OnFrame(InterfaceCapture capture, ReadOnlySpan<byte> frame)
    {
        Span<byte> reply = stackalloc byte[Frames.NeighborAdvertisementLength];
        int length;
        AddressCounters? counters;
        if (Frames.TryReadArpRequest(frame, capture.MacBytes, out var target) && (counters = OwnedOn(target, capture.Name)) is not null)
        {
            length = Frames.WriteArpReply(frame, capture.MacBytes, reply);
        }
        else if (Frames.TryReadNeighborSolicitation(frame, capture.MacBytes, out target) && (counters = OwnedOn(target, capture.Name)) is not null)
        {
            length = Frames.WriteNeighborAdvertisement(frame, capture.MacBytes, capture.LinkLocal.Address, reply);
        }
        else
        {
            return;
        }

        Interlocked.Increment(ref counters.RequestsReceived);
        if (_mayAnswer() && capture.Send(reply[..length]))
        {
            Interlocked.Increment(ref counters.RepliesSent);
        }
    }

    /// <summary>Stops answering for everything.</summary>
    public void Dispose()
    {
        NetworkChange.NetworkAddressChanged -= OnAddressChanged;
        _captures.Reopened -= OnReopened;
        _owned = FrozenDictionary<Ip, Owned>.Empty;
    }

    /// <summary>Addresses on a capture just closed are no longer answered there.</summary>
    private void OnReopened()
    {
        var owned = _owned;
        if (owned.Any(kv => kv.Value.Interfaces.Any(i => _captures[i] is null)))
        {
            _ = SetOwned(owned.ToDictionary(kv => kv.Key, kv => kv.Value.Interfaces));
        }
    }

    private void OnAddressChanged(object? sender, EventArgs e) => Interlocked.Increment(ref _addressChanges);

    /// <summary>The counters of <paramref name="address"/> if this node answers for it on the interface, else null.</summary>
    private AddressCounters? OwnedOn(Ip address, string interfaceName) =>
        _owned.TryGetValue(address, out var owned) && Array.IndexOf(owned.Interfaces, interfaceName) >= 0 ? owned.Counters : null;
}

/// <summary>Packets for one owned address, counted on the answering path without locks or allocation.</summary>
public sealed class AddressCounters
{
    internal long RequestsReceived;
    internal long RepliesSent;
    internal long GratuitousSent;

    public long Requests => Interlocked.Read(ref RequestsReceived);

    public long Replies => Interlocked.Read(ref RepliesSent);

    public long Gratuitous => Interlocked.Read(ref GratuitousSent);
}

/// <summary>An owned address: the interfaces it is answered on and its counters.</summary>
internal sealed record Owned(string[] Interfaces, AddressCounters Counters);
