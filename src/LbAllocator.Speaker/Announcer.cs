using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Collections.Frozen;
using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Runtime.InteropServices;
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

    /// <summary>
    /// Keeps a capture open on exactly these interfaces (those this node announces on, whether it owns anything
    /// or not: heartbeats go out and come in there), reopening any that failed. Returns the interfaces it could
    /// not open, with why.
    /// </summary>
    IReadOnlyDictionary<string, string> Listen(IReadOnlyCollection<string> interfaces);

    /// <summary>Sends the heartbeat on every open capture; returns on how many it went out.</summary>
    int SendHeartbeat(Heartbeat heartbeat);

    /// <summary>
    /// Raises <see cref="HeartbeatHeard"/> for each heartbeat that arrived since the last call. Peers' heartbeats wake
    /// no thread: they wait in the kernel until read, at each beat and before judging who is alive.
    /// </summary>
    void ReadHeartbeats();

    /// <summary>
    /// A heartbeat from another host, and how long ago it arrived: raised by <see cref="ReadHeartbeats"/>, and at once on
    /// a capture thread for a leaving one (keep it short).
    /// </summary>
    event Action<Heartbeat, TimeSpan>? HeartbeatHeard;

    /// <summary>A capture stopped or could not send: the interface may have gone down or away.</summary>
    event Action? CaptureTrouble;

    /// <summary>
    /// Watches these addresses (owned or held back) for claims by other hosts: <see cref="AddressClaimed"/> is raised
    /// for each ARP or Neighbor Advertisement that says a host that is neither this node nor a speaker uses one.
    /// </summary>
    void Guard(IReadOnlyCollection<Ip> addresses);

    /// <summary>Sends one probe for the address on the interface (ARP probe, or duplicate address detection); false when it could not go out.</summary>
    bool Probe(Ip address, string interfaceName);

    /// <summary>A host that is not a speaker claims a guarded address (on a capture thread: keep it short).</summary>
    event Action<Ip, MacAddress>? AddressClaimed;

    /// <summary>Addresses another node announces and this one checks: <see cref="AddressAnswered"/> is raised for every answer heard for one.</summary>
    void Verify(IReadOnlyCollection<Ip> addresses);

    /// <summary>Some host answered for (or announced) an address being verified, from this MAC (on a capture thread).</summary>
    event Action<Ip, MacAddress>? AddressAnswered;

    /// <summary>The interfaces with an open capture, and their MACs.</summary>
    IReadOnlyDictionary<string, MacAddress> Interfaces { get; }
}

/// <summary>
/// Answers ARP and NDP for the addresses this node owns, on the interfaces chosen for each, and sends
/// gratuitous announcements when it takes an address over; sends and hears the speakers' heartbeats, and reports
/// other hosts claiming guarded addresses. Two captures per interface announced on (libpcap, immediate mode): one
/// with a thread that waits for what needs an answer or an action at once (ARP, Neighbor Solicitations and
/// Advertisements, leaving heartbeats), and one read without a thread at each beat for the peers' heartbeats. Each
/// peer beats ten times a second: a thread woken by every beat cost a wake-up per frame, growing with the cluster (1,000
/// peers took 9 % of a core); read in batches, it is one read per beat whatever the number of peers. For each owned
/// IPv6 address it joins the address's solicited-node multicast group on the interface, so switches that snoop MLD
/// forward the solicitations for it to this node, and it sends Neighbor Advertisements from the interface's
/// link-local address.
/// </summary>
public sealed partial class Announcer : IAnnouncer, IDisposable
{
    // Only what we may answer or must hear, filtered in the kernel: ARP (requests to answer; requests and replies
    // from a host claiming a guarded address), ICMPv6 types 135 and 136 without extension headers, leaving
    // heartbeats. Inbound only: our own frames would wake the capture thread for nothing.
    private const string CaptureFilter = "inbound and (arp or (icmp6 and (ip6[40] = 135 or ip6[40] = 136)) or (" + Heartbeat.LeavingFilter + "))";

    // The peers' heartbeats, leaving ones too (a frame read here after the capture thread's leaving one is older, and
    // the liveness view keeps the newest).
    private const string HeartbeatFilter = "inbound and " + Heartbeat.CaptureFilter;

    private readonly Dictionary<string, Listener> _listeners = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _openFailures = new(StringComparer.Ordinal); // as last logged: a retry every second says nothing new
    private readonly Lock _lock = new();
    private volatile FrozenDictionary<Ip, Owned> _owned = FrozenDictionary<Ip, Owned>.Empty;
    private volatile FrozenSet<Ip> _guarded = FrozenSet<Ip>.Empty;
    private volatile FrozenSet<Ip> _verified = FrozenSet<Ip>.Empty;
    private volatile FrozenDictionary<string, MacAddress> _interfaces = FrozenDictionary<string, MacAddress>.Empty;
    private volatile FrozenSet<MacAddress> _ownMacs = FrozenSet<MacAddress>.Empty; // every capture's: a claim from one is ours

    // Every MAC a heartbeat came from: a speaker taking over (or still answering during a handover) is no conflict.
    private readonly ConcurrentDictionary<MacAddress, bool> _speakerMacs = new();

    private readonly ILogger<Announcer> _logger;
    private int _addressChanges; // the kernel's address changes reported so far: a link-local read before the last one is stale

    public Announcer(ILogger<Announcer> logger)
    {
        _logger = logger;
        NetworkChange.NetworkAddressChanged += OnAddressChanged;
    }

    public event Action<Heartbeat, TimeSpan>? HeartbeatHeard;

    public event Action? CaptureTrouble;

    public event Action<Ip, MacAddress>? AddressClaimed;

    public event Action<Ip, MacAddress>? AddressAnswered;

    public void Guard(IReadOnlyCollection<Ip> addresses) => _guarded = addresses.ToFrozenSet();

    public void Verify(IReadOnlyCollection<Ip> addresses) => _verified = addresses.ToFrozenSet();

    public IReadOnlyDictionary<string, MacAddress> Interfaces => _interfaces;

    public bool Probe(Ip address, string interfaceName)
    {
        Listener? listener;
        lock (_lock)
        {
            if (!_listeners.TryGetValue(interfaceName, out listener))
            {
                return false;
            }
        }

        return listener.Send(address.Family == IpFamily.IPv4 ? Frames.ArpProbe(address, listener.Mac) : Frames.DuplicateAddressProbe(address, listener.Mac));
    }

    /// <summary>
    /// Makes the owned addresses exactly <paramref name="owned"/> (address to the interfaces it is announced
    /// on), on the captures <see cref="Listen"/> keeps open. Returns the (address, interface) pairs that are new,
    /// which the caller announces gratuitously.
    /// </summary>
    public IReadOnlyList<(Ip Address, string Interface)> SetOwned(IReadOnlyDictionary<Ip, string[]> owned)
    {
        lock (_lock)
        {
            var previous = _owned;
            var usable = owned
                .Select(kv => (kv.Key, Interfaces: kv.Value.Where(_listeners.ContainsKey).ToArray()))
                .Where(x => x.Interfaces.Length > 0)
                .ToFrozenDictionary(x => x.Key, x => new Owned(x.Interfaces, previous.TryGetValue(x.Key, out var before) ? before.Counters : new AddressCounters()));
            _owned = usable;
            foreach (var listener in _listeners.Values)
            {
                listener.JoinExactly(usable
                    .Where(kv => kv.Key.Family == IpFamily.IPv6 && kv.Value.Interfaces.Contains(listener.Name, StringComparer.Ordinal))
                    .Select(kv => Frames.SolicitedNodeGroup(kv.Key))
                    .ToHashSet());
            }

            return [.. usable.SelectMany(kv => kv.Value.Interfaces
                .Where(i => !(previous.TryGetValue(kv.Key, out var before) && before.Interfaces.Contains(i, StringComparer.Ordinal)))
                .Select(i => (kv.Key, i)))];
        }
    }

    public IReadOnlyDictionary<string, string> Listen(IReadOnlyCollection<string> interfaces)
    {
        var problems = new Dictionary<string, string>(StringComparer.Ordinal);
        lock (_lock)
        {
            foreach (var name in _listeners.Keys.Where(n => !interfaces.Contains(n) || _listeners[n].Failed).ToList())
            {
                _listeners[name].Dispose();
                _listeners.Remove(name);
                LogClosed(name);
            }

            foreach (var name in interfaces.Where(n => !_listeners.ContainsKey(n)))
            {
                try
                {
                    _listeners[name] = Listener.Open(name, this);
                    _openFailures.Remove(name);
                    LogOpened(name, _listeners[name].MacText);
                }
                catch (Exception e) when (e is PcapException or InvalidOperationException or DllNotFoundException)
                {
                    problems[name] = CannotCapture(e.Message, (e as PcapException)?.Error);
                    if (_openFailures.GetValueOrDefault(name) != problems[name])
                    {
                        _openFailures[name] = problems[name];
                        LogOpenFailed(e, name, problems[name]);
                    }
                }
            }

            foreach (var listener in _listeners.Values)
            {
                listener.ReadLinkLocal(advertising: _owned.Any(kv => kv.Key.Family == IpFamily.IPv6 && kv.Value.Interfaces.Contains(listener.Name, StringComparer.Ordinal)));
            }

            foreach (var name in _openFailures.Keys.Where(n => !interfaces.Contains(n)).ToList())
            {
                _openFailures.Remove(name);
            }

            _interfaces = _listeners.ToFrozenDictionary(kv => kv.Key, kv => MacAddress.Read(kv.Value.Mac), StringComparer.Ordinal);
            _ownMacs = _interfaces.Values.ToFrozenSet();

            // Addresses on a capture just closed are no longer answered there.
            if (_owned.Any(kv => kv.Value.Interfaces.Any(i => !_listeners.ContainsKey(i))))
            {
                _ = SetOwned(_owned.ToDictionary(kv => kv.Key, kv => kv.Value.Interfaces));
            }
        }

        return problems;
    }

    public int SendHeartbeat(Heartbeat heartbeat)
    {
        var sent = 0;
        Span<byte> frame = stackalloc byte[Heartbeat.MaxLength];
        Listener[] listeners;
        lock (_lock)
        {
            listeners = [.. _listeners.Values];
        }

        foreach (var listener in listeners.Where(l => !l.Failed))
        {
            if (listener.Send(frame[..heartbeat.Write(listener.Mac, frame)]))
            {
                sent++;
            }
            else
            {
                CaptureTrouble?.Invoke();
            }
        }

        return sent;
    }

    public void ReadHeartbeats()
    {
        Listener[] listeners;
        lock (_lock)
        {
            listeners = [.. _listeners.Values];
        }

        foreach (var listener in listeners)
        {
            listener.ReadHeartbeats();
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

            if (address.Family == IpFamily.IPv6)
            {
                // It may have come (DAD done) or gone since the last pass; the refresh asks for one address after another.
                listener.ReadLinkLocalIfStale(Volatile.Read(ref _addressChanges));
            }
        }

        byte[][] frames = address.Family == IpFamily.IPv4
            ? [Frames.GratuitousArp(address, listener.Mac, reply: false), Frames.GratuitousArp(address, listener.Mac, reply: true)]
            : [Frames.UnsolicitedAdvertisement(address, listener.Mac, listener.LinkLocal)];
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
        NetworkChange.NetworkAddressChanged -= OnAddressChanged;
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

    /// <summary>Why a capture could not open, worded so an operator can act: a refusal names the capability it takes.</summary>
    internal static string CannotCapture(string message, PcapError? error) =>
        error is PcapError.PermissionDenied or PcapError.PromiscuousPermissionDenied
            ? $"cannot capture: {message} (the speaker needs the NET_RAW capability)"
            : $"cannot capture: {message}";

    private void OnAddressChanged(object? sender, EventArgs e) => Interlocked.Increment(ref _addressChanges);

    /// <summary>A heartbeat frame that arrived <paramref name="age"/> ago on <paramref name="listener"/>'s interface.</summary>
    private void OnHeartbeat(Listener listener, ReadOnlySpan<byte> frame, TimeSpan age)
    {
        if (Heartbeat.TryRead(frame, listener.Mac, out var heartbeat))
        {
            _speakerMacs.TryAdd(MacAddress.Read(frame[6..]), true);
            HeartbeatHeard?.Invoke(heartbeat, age);
        }
    }

    /// <summary>Called on the capture thread of <paramref name="listener"/> for every frame the filter lets through.</summary>
    private void OnFrame(Listener listener, ReadOnlySpan<byte> frame)
    {
        if (Heartbeat.IsHeartbeat(frame))
        {
            OnHeartbeat(listener, frame, TimeSpan.Zero); // a leaving one, read as it arrived
            return;
        }

        if (Frames.TryReadClaim(frame, listener.Mac, out var claimed, out var claimant))
        {
            if (_guarded.Contains(claimed) && !_ownMacs.Contains(claimant) && !_speakerMacs.ContainsKey(claimant))
            {
                AddressClaimed?.Invoke(claimed, claimant);
                return;
            }

            if (_verified.Contains(claimed))
            {
                AddressAnswered?.Invoke(claimed, claimant);
                return;
            }
        }

        Span<byte> reply = stackalloc byte[Frames.NeighborAdvertisementLength];
        int length;
        AddressCounters? counters;
        if (Frames.TryReadArpRequest(frame, listener.Mac, out var target) && (counters = OwnedOn(target, listener.Name)) is not null)
        {
            length = Frames.WriteArpReply(frame, listener.Mac, reply);
        }
        else if (Frames.TryReadNeighborSolicitation(frame, listener.Mac, out target) && (counters = OwnedOn(target, listener.Name)) is not null)
        {
            length = Frames.WriteNeighborAdvertisement(frame, listener.Mac, listener.LinkLocal, reply);
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot listen on {Interface} ({Problem}); addresses meant for it are not announced there. Retrying; logged again when the reason changes")]
    private partial void LogOpenFailed(Exception exception, string @interface, string problem);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sending on {Interface} failed")]
    private partial void LogSendFailed(Exception exception, string @interface);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Capture on {Interface} stopped: {Status}")]
    private partial void LogCaptureStopped(string @interface, CaptureStoppedEventStatus status);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Interface} has no IPv6 link-local address: Neighbor Advertisements there go out from the advertised address itself until it has one")]
    private partial void LogNoLinkLocal(string @interface);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot join {Group} on {Interface}: switches that snoop MLD may not forward Neighbor Solicitations for it to this node. Retried at every pass; logged once")]
    private partial void LogJoinFailed(Exception exception, string @interface, Ip group);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Change} {Group} on {Interface}")]
    private partial void LogMembership(string change, Ip group, string @interface);

    private sealed class Listener : IDisposable
    {
        // Read again for an announcement when older than this, even without an address change reported (one may be missed).
        private static readonly TimeSpan LinkLocalMaxAge = TimeSpan.FromSeconds(1);

        // The most heartbeats read at a time: all that wait, unless a flood keeps them coming (1,000 peers send 1,000 a beat).
        private const int HeartbeatBatch = 4096;

        private readonly LibPcapLiveDevice _device;
        private readonly LibPcapLiveDevice _heartbeats; // non-blocking, read by ReadHeartbeats: no thread waits on it
        // Bytes kept of each frame, in both captures: ARP, NDP and heartbeats of node names up to 99 characters (longer
        // ones are cut, and those nodes judged by their lease).
        private const int Snaplen = 128;

        private readonly byte[] _heartbeatFrame = new byte[Snaplen];
        private readonly Lock _heartbeatsLock = new(); // libpcap handles are not thread-safe; held while reading or closing
        private bool _closed;
        private readonly Announcer _owner;
        private readonly int _index;
        private readonly Dictionary<Ip, Socket> _groups = []; // solicited-node groups joined, each on the socket that holds it
        private readonly List<Socket> _groupSockets = [];
        private readonly HashSet<Ip> _joinFailures = []; // as logged: each pass retries, saying nothing new
        private volatile byte[]? _linkLocal;
        private long _linkLocalReadAt; // Stopwatch timestamp of the last read
        private int _linkLocalReadAfter; // the owner's address changes counted when it was read
        private bool _noLinkLocalLogged;
        private volatile bool _sendFailing;

        private Listener(LibPcapLiveDevice device, LibPcapLiveDevice heartbeats, Announcer owner)
        {
            _device = device;
            _heartbeats = heartbeats;
            _owner = owner;
            Name = device.Name;
            _index = NetworkInterfaces.Index(Name) ?? throw new InvalidOperationException($"interface {Name} not found");
            Mac = device.MacAddress?.GetAddressBytes() is { Length: Frames.MacLength } mac
                ? mac
                : throw new InvalidOperationException($"interface {device.Name} has no Ethernet address");
            MacText = string.Join(':', Mac.Select(b => b.ToString("x2")));
        }

        public string Name { get; }

        public byte[] Mac { get; }

        public string MacText { get; }

        /// <summary>A capture stopped by itself (the interface went down or away); <see cref="Listen"/> reopens it.</summary>
        public bool Failed { get; private set; }

        /// <summary>Hands each heartbeat waiting in the kernel to the owner, with how long ago it arrived.</summary>
        public void ReadHeartbeats()
        {
            lock (_heartbeatsLock)
            {
                for (var i = 0; i < HeartbeatBatch && !_closed && !Failed; i++)
                {
                    IntPtr header = 0, data = 0;
                    var read = _heartbeats.GetNextPacketPointers(ref header, ref data);
                    if (read != 1)
                    {
                        if (read < 0) // PCAP_ERROR: the interface went down or away
                        {
                            Failed = true;
                            _owner.LogCaptureStopped(Name, CaptureStoppedEventStatus.ErrorWhileCapturing);
                            _owner.CaptureTrouble?.Invoke();
                        }

                        return;
                    }

                    // struct pcap_pkthdr on 64-bit Linux: struct timeval (two longs), caplen, len.
                    var arrived = DateTimeOffset.FromUnixTimeSeconds(Marshal.ReadInt64(header)).AddTicks(Marshal.ReadInt64(header, 8) * 10);
                    var length = Math.Min(Marshal.ReadInt32(header, 16), _heartbeatFrame.Length);
                    Marshal.Copy(data, _heartbeatFrame, 0, length);
                    var age = DateTimeOffset.UtcNow - arrived;
                    _owner.OnHeartbeat(this, _heartbeatFrame.AsSpan(0, length), age > TimeSpan.Zero ? age : TimeSpan.Zero);
                }
            }
        }

        /// <summary>The link-local address advertisements go out from; empty while the interface has none.</summary>
        public ReadOnlySpan<byte> LinkLocal => _linkLocal;

        /// <summary>
        /// Reads the interface's link-local address again. Says once per spell without one that it has none, when it
        /// advertises an IPv6 address there (an IPv4-only node without IPv6 has nothing to be told).
        /// </summary>
        public void ReadLinkLocal(bool advertising)
        {
            _linkLocalReadAfter = Volatile.Read(ref _owner._addressChanges);
            _linkLocalReadAt = Stopwatch.GetTimestamp();
            var now = NetworkInterfaces.LinkLocal(Name);
            if (now is not null)
            {
                _noLinkLocalLogged = false;
            }
            else if (advertising && !_noLinkLocalLogged)
            {
                _noLinkLocalLogged = true;
                _owner.LogNoLinkLocal(Name);
            }

            _linkLocal = now;
        }

        /// <summary>
        /// <see cref="ReadLinkLocal"/> for an announcement, unless read since the last address change the kernel reported
        /// and within <see cref="LinkLocalMaxAge"/>: the refresh announces address after address (many a second with a
        /// short interval), and reading /proc/net/if_inet6 for each was a good part of the speaker's idle CPU.
        /// </summary>
        public void ReadLinkLocalIfStale(int addressChanges)
        {
            if (addressChanges != _linkLocalReadAfter || Stopwatch.GetElapsedTime(_linkLocalReadAt) >= LinkLocalMaxAge)
            {
                ReadLinkLocal(advertising: true);
            }
        }

        /// <summary>
        /// Makes the multicast groups joined on this interface exactly <paramref name="groups"/>: the kernel reports
        /// each join and leave by MLD (`ip -6 maddr show dev IF` lists them), and closing the capture leaves them all.
        /// </summary>
        public void JoinExactly(HashSet<Ip> groups)
        {
            foreach (var (group, socket) in _groups.Where(g => !groups.Contains(g.Key)).ToList())
            {
                _groups.Remove(group);
                try
                {
                    Membership(socket, SocketOptionName.DropMembership, group);
                    _owner.LogMembership("Left", group, Name);
                }
                catch (SocketException)
                {
                    // The interface is gone, and the membership with it.
                }
            }

            _joinFailures.IntersectWith(groups);
            foreach (var group in groups.Where(g => !_groups.ContainsKey(g)))
            {
                try
                {
                    _groups[group] = Join(group);
                    _joinFailures.Remove(group);
                    _owner.LogMembership("Joined", group, Name);
                }
                catch (SocketException e)
                {
                    if (_joinFailures.Add(group))
                    {
                        _owner.LogJoinFailed(e, Name, group);
                    }
                }
            }
        }

        public static Listener Open(string name, Announcer owner)
        {
            var device = LibPcapLiveDeviceList.New().FirstOrDefault(d => d.Name == name)
                ?? throw new InvalidOperationException($"interface {name} not found");
            var heartbeats = new LibPcapLiveDevice(device.Interface ?? throw new InvalidOperationException($"interface {name} not found"));
            // Promiscuous so solicitations reach us whatever groups the interface has joined (the joins are for
            // switches that snoop MLD; one may fail); the kernel filter keeps everything else out.
            device.Open(new DeviceConfiguration
            {
                Mode = DeviceModes.Promiscuous,
                Immediate = true,
                ReadTimeout = 100,
                Snaplen = Snaplen,
                // The kernel's ring: 1 MiB holds about 4,000 frames of this snaplen, 80 ms of a 50,000/s ARP flood, and
                // every page of it ends up resident (libpcap's default is 2 MiB; bench/RESULTS.md, issue 14).
                BufferSize = 1 << 20,
            });
            try
            {
                heartbeats.Open(new DeviceConfiguration
                {
                    Mode = DeviceModes.None, // heartbeats go to the broadcast address
                    Immediate = true, // each frame readable as it arrives, not when a block of them fills
                    Snaplen = Snaplen,
                    // About 2,800 frames: nearly three beats of 1,000 peers. With 256 KiB and whole frames, 1,000 simulated
                    // peers overflowed it between two reads, real peers' beats were lost with the rest, and two nodes
                    // answered (bench/RESULTS.md, issue 14).
                    BufferSize = 512 << 10,
                });
                heartbeats.NonBlockingMode = true;
                heartbeats.Filter = HeartbeatFilter;
                var listener = new Listener(device, heartbeats, owner);
                device.Filter = CaptureFilter;
                listener.ReadLinkLocal(advertising: false);
                device.OnPacketArrival += listener.Arrived;
                device.OnCaptureStopped += listener.Stopped;
                device.StartCapture();
                return listener;
            }
            catch
            {
                device.Close(); // a capture that cannot serve is not left open
                heartbeats.Close();
                throw;
            }
        }

        public bool Send(ReadOnlySpan<byte> frame)
        {
            try
            {
                _device.SendPacket(frame);
                _sendFailing = false;
                return true;
            }
            catch (PcapException e)
            {
                // Heartbeats go out ten times a second: say so once per failing spell.
                if (!_sendFailing)
                {
                    _sendFailing = true;
                    _owner.LogSendFailed(e, Name);
                }

                return false;
            }
        }

        public void Dispose()
        {
            _device.OnPacketArrival -= Arrived;
            _device.OnCaptureStopped -= Stopped;
            try
            {
                _device.StopCapture();
            }
            catch (PcapException)
            {
                // The interface may be gone already.
            }

            _device.Close();
            lock (_heartbeatsLock)
            {
                _closed = true;
                _heartbeats.Close();
            }

            foreach (var socket in _groupSockets)
            {
                socket.Dispose(); // the kernel leaves its groups
            }
        }

        /// <summary>Joins on a socket with room for another membership (each holds what net.core.optmem_max allows), else a new one.</summary>
        private Socket Join(Ip group)
        {
            foreach (var socket in _groupSockets)
            {
                try
                {
                    Membership(socket, SocketOptionName.AddMembership, group);
                    return socket;
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.NoBufferSpaceAvailable)
                {
                }
            }

            var fresh = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp);
            try
            {
                Membership(fresh, SocketOptionName.AddMembership, group);
            }
            catch
            {
                fresh.Dispose();
                throw;
            }

            _groupSockets.Add(fresh);
            return fresh;
        }

        private void Membership(Socket socket, SocketOptionName change, Ip group)
        {
            var bytes = new byte[16];
            BinaryPrimitives.WriteUInt128BigEndian(bytes, group.Value);
            socket.SetSocketOption(SocketOptionLevel.IPv6, change, new IPv6MulticastOption(new IPAddress(bytes), _index));
        }

        private void Arrived(object sender, PacketCapture capture) => _owner.OnFrame(this, capture.Data);

        private void Stopped(object sender, CaptureStoppedEventStatus status)
        {
            Failed = true;
            _owner.LogCaptureStopped(Name, status);
            _owner.CaptureTrouble?.Invoke();
        }
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
