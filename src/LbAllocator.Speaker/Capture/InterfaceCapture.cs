using System.Diagnostics;
using System.Runtime.InteropServices;
using LbAllocator.Hosting;
using LbAllocator.Speaker.Lan;
using Microsoft.Extensions.Logging;
using SharpPcap;
using SharpPcap.LibPcap;

namespace LbAllocator.Speaker.Capture;

/// <summary>What an interface's capture hands on (as MetalLB's announcer gets its per-interface ARP and NDP readers' frames).</summary>
internal interface ICaptureHandler
{
    /// <summary>A frame that needs an answer or an action at once: ARP, Neighbor Solicitations and Advertisements, speaker messages other than beats. On the capture's thread.</summary>
    void OnFrame(InterfaceCapture capture, ReadOnlySpan<byte> frame);

    /// <summary>A beat addressed to this interface, arrived <paramref name="age"/> ago; on the thread that called <see cref="InterfaceCapture.ReadBeats"/>.</summary>
    void OnBeat(InterfaceCapture capture, ReadOnlySpan<byte> frame, TimeSpan age);

    /// <summary>The capture stopped by itself (the interface went down or away).</summary>
    void OnStopped(InterfaceCapture capture);
}

/// <summary>
/// One interface's two captures (libpcap, immediate mode, filtered in the kernel): one read by a thread of its own,
/// for what needs an answer or an action at once, and one read without a thread, in batches, for the beats of ring
/// neighbours (a thread woken by every beat would cost a wake-up per frame). The thread reports each turn to the
/// health checks, so one stuck in libpcap makes the process unhealthy. Sends through the first.
/// </summary>
internal sealed partial class InterfaceCapture : IDisposable
{
    /// <summary>Bytes kept of a frame: ARP, NDP and the speakers' messages (a view is sent in parts that fit).</summary>
    public const int Snaplen = LanFrames.MaxSyncFrame;

    // The thread's wait for a frame: it reports to the health checks at least this often.
    private const int ReadTimeoutMs = 500;
    private const int BeatSnaplen = 384;
    private static readonly TimeSpan SpinGuard = TimeSpan.FromMilliseconds(10);
    private const int BeatBatch = 1024;

    // Inbound only (our own frames would wake the thread for nothing).
    private const string FrameFilter = "inbound and (arp or (icmp6 and (ip6[40] = 135 or ip6[40] = 136)) or (" + LanFrames.OtherFilterExpression + "))";

    private readonly LibPcapLiveDevice _device;
    private readonly LibPcapLiveDevice _beats; // non-blocking, read by ReadBeats: no thread waits on it
    private readonly ICaptureHandler _handler;
    private readonly Health _health;
    private readonly ILogger _logger;
    private readonly Lock _beatsLock = new(); // libpcap handles are not thread-safe; held while reading or closing
    private readonly byte[] _beatFrame = new byte[BeatSnaplen];
    private readonly Thread _thread;
    private volatile bool _stopping;
    private volatile bool _sendFailing;
    private long _turnedAt = Stopwatch.GetTimestamp();
    private bool _closed;

    private InterfaceCapture(LibPcapLiveDevice device, LibPcapLiveDevice beats, ICaptureHandler handler, Health health, ILogger logger)
    {
        _device = device;
        _beats = beats;
        _handler = handler;
        _health = health;
        _logger = logger;
        Name = device.Name;
        Index = NetworkInterfaces.Index(Name) ?? throw new InvalidOperationException($"interface {Name} not found");
        Mac = device.MacAddress?.GetAddressBytes() is { Length: Frames.MacLength } mac
            ? MacAddress.Read(mac)
            : throw new InvalidOperationException($"interface {device.Name} has no Ethernet address");
        MacBytes = device.MacAddress!.GetAddressBytes();
        Groups = new SolicitedNodeGroups(Name, Index, logger);
        LinkLocal = new LinkLocalAddress(Name, logger);
        _thread = new Thread(Read) { IsBackground = true, Name = $"capture {Name}" };
    }

    public string Name { get; }

    public int Index { get; }

    public MacAddress Mac { get; }

    public byte[] MacBytes { get; }

    public SolicitedNodeGroups Groups { get; }

    public LinkLocalAddress LinkLocal { get; }

    /// <summary>The capture stopped by itself (the interface went down or away); it is closed and opened anew.</summary>
    public bool Failed { get; private set; }

    /// <summary>How long since the capture thread last turned (it turns at least every read timeout).</summary>
    public TimeSpan SinceTurn => Stopwatch.GetElapsedTime(Volatile.Read(ref _turnedAt));

    private string HealthName => $"capture {Name}";

    public static InterfaceCapture Open(string name, ICaptureHandler handler, Health health, ILogger logger)
    {
        var device = LibPcapLiveDeviceList.New().FirstOrDefault(d => d.Name == name)
            ?? throw new InvalidOperationException($"interface {name} not found");
        var beats = new LibPcapLiveDevice(device.Interface ?? throw new InvalidOperationException($"interface {name} not found"));
        // Promiscuous so solicitations reach us whatever groups the interface has joined (the joins are for switches
        // that snoop MLD; one may fail); the kernel filter keeps everything else out.
        device.Open(new DeviceConfiguration
        {
            Mode = DeviceModes.Promiscuous,
            Immediate = true,
            ReadTimeout = ReadTimeoutMs,
            Snaplen = Snaplen,
            // The kernel's ring: every page of it ends up resident (bench/RESULTS.md, issue 14).
            BufferSize = 1 << 20,
        });
        try
        {
            beats.Open(new DeviceConfiguration { Mode = DeviceModes.None, Immediate = true, Snaplen = BeatSnaplen, BufferSize = 512 << 10 });
            beats.NonBlockingMode = true;
            device.NonBlockingMode = true;
            var capture = new InterfaceCapture(device, beats, handler, health, logger);
            beats.Filter = LanFrames.BeatFilter(capture.Mac);
            device.Filter = FrameFilter;
            capture.LinkLocal.Read(0, advertising: false);
            capture._health.Beat(capture.HealthName, MaxSilence);
            capture._thread.Start();
            return capture;
        }
        catch
        {
            device.Close(); // a capture that cannot serve is not left open
            beats.Close();
            throw;
        }
    }

    /// <summary>How long the capture thread may go without a turn before the process counts as unhealthy.</summary>
    public static readonly TimeSpan MaxSilence = TimeSpan.FromSeconds(2);

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
            // Beats go out ten times a second: say so once per failing spell.
            if (!_sendFailing)
            {
                _sendFailing = true;
                LogSendFailed(e, Name);
            }

            return false;
        }
    }

    /// <summary>Hands each beat waiting in the kernel to the handler, with how long ago it arrived.</summary>
    public void ReadBeats()
    {
        lock (_beatsLock)
        {
            for (var i = 0; i < BeatBatch && !_closed && !Failed; i++)
            {
                IntPtr header = 0, data = 0;
                var read = _beats.GetNextPacketPointers(ref header, ref data);
                if (read != 1)
                {
                    if (read < 0)
                    {
                        Stop(CaptureStoppedEventStatus.ErrorWhileCapturing);
                    }

                    return;
                }

                // struct pcap_pkthdr on 64-bit Linux: struct timeval (two longs), caplen, len.
                var arrived = DateTimeOffset.FromUnixTimeSeconds(Marshal.ReadInt64(header)).AddTicks(Marshal.ReadInt64(header, 8) * 10);
                var length = Math.Min(Marshal.ReadInt32(header, 16), _beatFrame.Length);
                Marshal.Copy(data, _beatFrame, 0, length);
                var age = DateTimeOffset.UtcNow - arrived;
                _handler.OnBeat(this, _beatFrame.AsSpan(0, length), age > TimeSpan.Zero ? age : TimeSpan.Zero);
            }
        }
    }

    /// <summary>Frames dropped so far by both captures: the kernel's ring was full (a flood, or a starved reader).</summary>
    public long Dropped()
    {
        try
        {
            long dropped = _device.Statistics?.DroppedPackets ?? 0;
            lock (_beatsLock)
            {
                return _closed ? dropped : dropped + (_beats.Statistics?.DroppedPackets ?? 0);
            }
        }
        catch (PcapException)
        {
            return 0; // the interface is going away
        }
    }

    public void Dispose()
    {
        _stopping = true;
        // At most one read timeout. A thread that does not come back (stuck in libpcap) keeps its handle open: closing it
        // under the reader would crash the process; /healthz fails instead, and the kubelet restarts it.
        if (Thread.CurrentThread != _thread && _thread.IsAlive && !_thread.Join(MaxSilence))
        {
            LogThreadStuck(Name);
            return;
        }

        _health.Stopped(HealthName);
        _device.Close();
        lock (_beatsLock)
        {
            _closed = true;
            _beats.Close();
        }

        Groups.Dispose();
    }

    /// <summary>The capture thread: each frame to the handler as it comes; a turn reported at least every read timeout.</summary>
    private void Read()
    {
        while (!_stopping)
        {
            Volatile.Write(ref _turnedAt, Stopwatch.GetTimestamp());
            _health.Beat(HealthName, MaxSilence);
            // The capture is non-blocking and polled for up to the read timeout: in immediate mode libpcap's own read
            // blocks until a frame comes, however long, and stays blocked when the interface goes down.
            GetPacketStatus read;
            try
            {
                var started = Stopwatch.GetTimestamp();
                read = _device.GetNextPacket(out var capture);
                if (read == GetPacketStatus.PacketRead)
                {
                    _handler.OnFrame(this, capture.Data);
                }
                else if (read == GetPacketStatus.ReadTimeout && Stopwatch.GetElapsedTime(started) < SpinGuard)
                {
                    // Readable but nothing to read: an error waits on the socket (the interface went down). A send sees
                    // it and a pass closes this capture; until then, no spinning.
                    Thread.Sleep(SpinGuard);
                }
            }
            catch (Exception e) when (e is PcapException or ObjectDisposedException)
            {
                read = GetPacketStatus.Error;
            }

            if (read < 0 && !_stopping)
            {
                Stop(CaptureStoppedEventStatus.ErrorWhileCapturing);
                return;
            }
        }
    }

    private void Stop(CaptureStoppedEventStatus status)
    {
        if (Failed)
        {
            return;
        }

        Failed = true;
        _health.Stopped(HealthName);
        LogCaptureStopped(Name, status);
        _handler.OnStopped(this);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sending on {Interface} failed")]
    private partial void LogSendFailed(Exception exception, string @interface);

    [LoggerMessage(Level = LogLevel.Error, Message = "The capture thread of {Interface} does not stop; its capture stays open until the process restarts")]
    private partial void LogThreadStuck(string @interface);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Capture on {Interface} stopped: {Status}")]
    private partial void LogCaptureStopped(string @interface, CaptureStoppedEventStatus status);
}
