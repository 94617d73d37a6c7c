using System.Collections.Frozen;
using LbAllocator.Core;
using Microsoft.Extensions.Logging;
using SharpPcap;
using SharpPcap.LibPcap;

namespace LbAllocator.Speaker;

/// <summary>What the decisions drive on the wire: the addresses answered for, and gratuitous announcements.</summary>
public interface IAnnouncer
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
/// Answers ARP and NDP for the addresses this node owns, on the interfaces chosen for each, and sends
/// gratuitous announcements when it takes an address over. One capture per interface (libpcap, immediate
/// mode, a kernel filter so only ARP requests and Neighbor Solicitations reach us).
/// </summary>
public sealed partial class Announcer(ILogger<Announcer> logger) : IAnnouncer, IDisposable
{
    // Only what we may answer, filtered in the kernel: ARP requests, and ICMPv6 type 135 without extension headers.
    private const string CaptureFilter = "(arp and arp[6:2] = 1) or (icmp6 and ip6[40] = 135)";

    private readonly Dictionary<string, Listener> _listeners = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private volatile FrozenDictionary<Ip, Owned> _owned = FrozenDictionary<Ip, Owned>.Empty;

    /// <summary>
    /// Makes the owned addresses exactly <paramref name="owned"/> (address to the interfaces it is announced
    /// on), opening and closing captures as needed. Returns the (address, interface) pairs that are new, which
    /// the caller announces gratuitously.
    /// </summary>
    public IReadOnlyList<(Ip Address, string Interface)> SetOwned(IReadOnlyDictionary<Ip, string[]> owned)
    {
        lock (_lock)
        {
            var wanted = owned.Values.SelectMany(i => i).ToHashSet(StringComparer.Ordinal);
            foreach (var name in _listeners.Keys.Where(n => !wanted.Contains(n)).ToList())
            {
                _listeners[name].Dispose();
                _listeners.Remove(name);
                LogClosed(name);
            }

            foreach (var name in wanted.Where(n => !_listeners.ContainsKey(n)))
            {
                try
                {
                    _listeners[name] = Listener.Open(name, this);
                    LogOpened(name, _listeners[name].MacText);
                }
                catch (Exception e) when (e is PcapException or InvalidOperationException or DllNotFoundException)
                {
                    LogOpenFailed(e, name);
                }
            }

            var previous = _owned;
            var usable = owned
                .Select(kv => (kv.Key, Interfaces: kv.Value.Where(_listeners.ContainsKey).ToArray()))
                .Where(x => x.Interfaces.Length > 0)
                .ToFrozenDictionary(x => x.Key, x => new Owned(x.Interfaces, previous.TryGetValue(x.Key, out var before) ? before.Counters : new AddressCounters()));
            _owned = usable;
            return [.. usable.SelectMany(kv => kv.Value.Interfaces
                .Where(i => !(previous.TryGetValue(kv.Key, out var before) && before.Interfaces.Contains(i, StringComparer.Ordinal)))
                .Select(i => (kv.Key, i)))];
        }
    }

    /// <summary>The addresses answered for now (a snapshot: SetOwned swaps in a new set).</summary>
    public IReadOnlyCollection<Ip> OwnedAddresses => _owned.Keys;

    /// <summary>The packet counts of each address owned now; an address given up starts again from zero.</summary>
    public IReadOnlyDictionary<Ip, AddressCounters> Counters() => _owned.ToDictionary(kv => kv.Key, kv => kv.Value.Counters);

    /// <summary>
    /// One round of gratuitous announcements for an address on an interface: ARP request and reply, or an
    /// unsolicited NA. False, and nothing sent, when the address is no longer owned there.
    /// </summary>
    public bool AnnounceGratuitously(Ip address, string interfaceName)
    {
        Listener? listener;
        AddressCounters? counters;
        lock (_lock)
        {
            if ((counters = OwnedOn(address, interfaceName)) is null || !_listeners.TryGetValue(interfaceName, out listener))
            {
                return false;
            }
        }

        byte[][] frames = address.Family == IpFamily.IPv4
            ? [Frames.GratuitousArp(address, listener.Mac, reply: false), Frames.GratuitousArp(address, listener.Mac, reply: true)]
            : [Frames.UnsolicitedAdvertisement(address, listener.Mac)];
        foreach (var frame in frames)
        {
            if (listener.Send(frame))
            {
                Interlocked.Increment(ref counters.GratuitousSent);
            }
        }

        return true;
    }

    /// <summary>Stops answering for everything and closes every capture.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _owned = FrozenDictionary<Ip, Owned>.Empty;
            foreach (var listener in _listeners.Values)
            {
                listener.Dispose();
            }

            _listeners.Clear();
        }
    }

    /// <summary>Called on the capture thread of <paramref name="listener"/> for every frame the filter lets through.</summary>
    private void OnFrame(Listener listener, ReadOnlySpan<byte> frame)
    {
        Span<byte> reply = stackalloc byte[Frames.NeighborAdvertisementLength];
        int length;
        AddressCounters? counters;
        if (Frames.TryReadArpRequest(frame, listener.Mac, out var target) && (counters = OwnedOn(target, listener.Name)) is not null)
        {
            length = Frames.WriteArpReply(frame, listener.Mac, reply);
        }
        else if (Frames.TryReadNeighborSolicitation(frame, listener.Mac, out target) && (counters = OwnedOn(target, listener.Name)) is not null)
        {
            length = Frames.WriteNeighborAdvertisement(frame, listener.Mac, reply);
        }
        else
        {
            return;
        }

        Interlocked.Increment(ref counters.RequestsReceived);
        if (listener.Send(reply[..length]))
        {
            Interlocked.Increment(ref counters.RepliesSent);
        }
    }

    /// <summary>The counters of <paramref name="address"/> if this node answers for it on the interface, else null.</summary>
    private AddressCounters? OwnedOn(Ip address, string interfaceName) =>
        _owned.TryGetValue(address, out var owned) && Array.IndexOf(owned.Interfaces, interfaceName) >= 0 ? owned.Counters : null;

    [LoggerMessage(Level = LogLevel.Information, Message = "Listening for ARP and NDP on {Interface} ({Mac})")]
    private partial void LogOpened(string @interface, string mac);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stopped listening on {Interface}")]
    private partial void LogClosed(string @interface);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot listen on {Interface}; addresses meant for it are not announced there")]
    private partial void LogOpenFailed(Exception exception, string @interface);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sending on {Interface} failed")]
    private partial void LogSendFailed(Exception exception, string @interface);

    private sealed class Listener : IDisposable
    {
        private readonly LibPcapLiveDevice _device;
        private readonly Announcer _owner;

        private Listener(LibPcapLiveDevice device, Announcer owner)
        {
            _device = device;
            _owner = owner;
            Name = device.Name;
            Mac = device.MacAddress?.GetAddressBytes() is { Length: Frames.MacLength } mac
                ? mac
                : throw new InvalidOperationException($"interface {device.Name} has no Ethernet address");
            MacText = string.Join(':', Mac.Select(b => b.ToString("x2")));
        }

        public string Name { get; }

        public byte[] Mac { get; }

        public string MacText { get; }

        public static Listener Open(string name, Announcer owner)
        {
            var device = LibPcapLiveDeviceList.New().FirstOrDefault(d => d.Name == name)
                ?? throw new InvalidOperationException($"interface {name} not found");
            // Promiscuous so Neighbor Solicitations to any solicited-node multicast group reach us without
            // joining a group per address; the kernel filter keeps everything else out.
            device.Open(new DeviceConfiguration
            {
                Mode = DeviceModes.Promiscuous,
                Immediate = true,
                ReadTimeout = 100,
                Snaplen = 128,
            });
            var listener = new Listener(device, owner);
            device.Filter = CaptureFilter;
            device.OnPacketArrival += listener.Arrived;
            device.StartCapture();
            return listener;
        }

        public bool Send(ReadOnlySpan<byte> frame)
        {
            try
            {
                _device.SendPacket(frame);
                return true;
            }
            catch (PcapException e)
            {
                _owner.LogSendFailed(e, Name);
                return false;
            }
        }

        public void Dispose()
        {
            _device.OnPacketArrival -= Arrived;
            try
            {
                _device.StopCapture();
            }
            catch (PcapException)
            {
                // The interface may be gone already.
            }

            _device.Close();
        }

        private void Arrived(object sender, PacketCapture capture) => _owner.OnFrame(this, capture.Data);
    }
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
