using System.Buffers.Binary;
using System.Collections.Frozen;
using LbAllocator.Hosting;
using LbAllocator.Speaker.Lan;
using Microsoft.Extensions.Logging;
using SharpPcap;

namespace LbAllocator.Speaker.Capture;

/// <summary>The interfaces this node announces on, with a capture open on each, as the pass sees them.</summary>
public interface ICaptures
{
    /// <summary>
    /// Keeps a capture open on exactly these interfaces (those this node announces on, whether it owns anything or
    /// not: the speakers' messages go out and come in there), reopening any that failed. Returns the interfaces it
    /// could not open, with why.
    /// </summary>
    IReadOnlyDictionary<string, string> Listen(IReadOnlyCollection<string> interfaces);

    /// <summary>The interfaces with an open capture, and their MACs.</summary>
    IReadOnlyDictionary<string, MacAddress> Interfaces { get; }

    /// <summary>A capture thread has not turned for longer than it may: this node cannot answer there.</summary>
    bool AnyStuck { get; }

    /// <summary>A capture stopped or could not send: the interface may have gone down or away.</summary>
    event Action? CaptureTrouble;
}

/// <summary>Frames a capture hands on, by what they are: the speakers' messages, and ARP and NDP.</summary>
internal interface IFrameReader
{
    void OnFrame(InterfaceCapture capture, ReadOnlySpan<byte> frame);
}

/// <summary>
/// The captures on the interfaces this node announces on (<see cref="InterfaceCapture"/>), and where their frames
/// go: the speakers' messages to the LAN transport, ARP and NDP to the address watch (claims and answers heard) and to
/// the announcer (answers given).
/// </summary>
public sealed partial class Captures : ICaptures, ICaptureHandler, IDisposable
{
    private readonly Dictionary<string, InterfaceCapture> _open = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _openFailures = new(StringComparer.Ordinal); // as last logged
    private readonly Lock _lock = new();
    private readonly Health _health;
    private readonly ILogger<Captures> _logger;
    private volatile InterfaceCapture[] _captures = [];
    private volatile FrozenDictionary<string, MacAddress> _interfaces = FrozenDictionary<string, MacAddress>.Empty;

    public Captures(Health health, ILogger<Captures> logger)
    {
        _health = health;
        _logger = logger;
    }

    public event Action? CaptureTrouble;

    /// <summary>Where the speakers' messages go; set before the first <see cref="Listen"/>.</summary>
    internal IFrameReader? Lan { get; set; }

    /// <summary>Where ARP and NDP go, in order: the address watch first, then the announcer.</summary>
    internal IFrameReader[] Neighbors { get; set; } = [];

    /// <summary>Where the beats read in batches go.</summary>
    internal Action<InterfaceCapture, ReadOnlySpan<byte>, TimeSpan>? Beats { get; set; }

    public IReadOnlyDictionary<string, MacAddress> Interfaces => _interfaces;

    /// <summary>The open captures (a snapshot).</summary>
    internal IReadOnlyList<InterfaceCapture> Open => _captures;

    internal InterfaceCapture? this[string name] => _captures.FirstOrDefault(c => c.Name == name);

    /// <summary>Raised after the set of open captures changed (the announcer moves what it answers off closed ones).</summary>
    internal event Action? Reopened;

    public IReadOnlyDictionary<string, string> Listen(IReadOnlyCollection<string> interfaces)
    {
        var problems = new Dictionary<string, string>(StringComparer.Ordinal);
        var changed = false;
        lock (_lock)
        {
            foreach (var name in _open.Keys.Where(n => !interfaces.Contains(n) || _open[n].Failed).ToList())
            {
                _open[name].Dispose();
                _open.Remove(name);
                changed = true;
                LogClosed(name);
            }

            foreach (var name in interfaces.Where(n => !_open.ContainsKey(n)))
            {
                try
                {
                    _open[name] = InterfaceCapture.Open(name, this, _health, _logger);
                    _openFailures.Remove(name);
                    changed = true;
                    LogOpened(name, _open[name].Mac);
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

            // A capture thread stuck (in libpcap, or starved) answers nothing: this node cannot answer there. It is not
            // reopened under the stuck thread; /healthz fails, and the kubelet restarts the process.
            foreach (var stuck in _open.Values.Where(c => !c.Failed && c.SinceTurn > InterfaceCapture.MaxSilence))
            {
                problems[stuck.Name] = $"capture thread stuck for {stuck.SinceTurn.TotalSeconds:0.#} s (the process is restarted when /healthz fails)";
            }

            foreach (var name in _openFailures.Keys.Where(n => !interfaces.Contains(n)).ToList())
            {
                _openFailures.Remove(name);
            }

            _captures = [.. _open.Values];
            _interfaces = _open.ToFrozenDictionary(kv => kv.Key, kv => kv.Value.Mac, StringComparer.Ordinal);
        }

        if (changed)
        {
            Reopened?.Invoke();
        }

        return problems;
    }

    /// <summary>Whether a capture thread has not turned for longer than it may (checked by the heartbeat thread).</summary>
    public bool AnyStuck => _captures.Any(c => !c.Failed && c.SinceTurn > InterfaceCapture.MaxSilence);

    /// <summary>Reads the beats waiting on every capture (the heartbeat thread, once an interval).</summary>
    internal void ReadBeats()
    {
        foreach (var capture in _captures)
        {
            capture.ReadBeats();
        }
    }

    /// <summary>Frames every capture dropped so far.</summary>
    internal long Dropped() => _captures.Sum(c => c.Dropped());

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var capture in _open.Values)
            {
                capture.Dispose();
            }

            _open.Clear();
            _captures = [];
            _interfaces = FrozenDictionary<string, MacAddress>.Empty;
        }
    }

    void ICaptureHandler.OnFrame(InterfaceCapture capture, ReadOnlySpan<byte> frame)
    {
        if (frame.Length >= 14 && BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) == LanFrames.EtherType)
        {
            Lan?.OnFrame(capture, frame);
            return;
        }

        foreach (var reader in Neighbors)
        {
            reader.OnFrame(capture, frame);
        }
    }

    void ICaptureHandler.OnBeat(InterfaceCapture capture, ReadOnlySpan<byte> frame, TimeSpan age) => Beats?.Invoke(capture, frame, age);

    void ICaptureHandler.OnStopped(InterfaceCapture capture) => CaptureTrouble?.Invoke();

    /// <summary>A send failed: the interface may be down or gone, which a scan shows.</summary>
    internal void SendFailed() => CaptureTrouble?.Invoke();

    /// <summary>Why a capture could not open, worded so an operator can act: a refusal names the capability it takes.</summary>
    internal static string CannotCapture(string message, PcapError? error) =>
        error is PcapError.PermissionDenied or PcapError.PromiscuousPermissionDenied
            ? $"cannot capture: {message} (the speaker needs the NET_RAW capability)"
            : $"cannot capture: {message}";

    [LoggerMessage(Level = LogLevel.Information, Message = "Listening for ARP, NDP and the speakers' messages on {Interface} ({Mac})")]
    private partial void LogOpened(string @interface, MacAddress mac);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stopped listening on {Interface}")]
    private partial void LogClosed(string @interface);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot listen on {Interface} ({Problem}); addresses meant for it are not announced there. Retrying; logged again when the reason changes")]
    private partial void LogOpenFailed(Exception exception, string @interface, string problem);
}
