using LbAllocator.Speaker.Capture;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker.Lan;

/// <summary>
/// The membership's messages on the wire: signed and sent on every open capture (a node announcing on several
/// interfaces is a member on each segment it reaches), and read back from them: beats in a batch at each tick, the
/// rest as they arrive. What fails to read is counted by reason and dropped, and logged at most once a minute per
/// reason, never with the key. Until the cluster key is known nothing goes out and nothing is taken.
/// </summary>
public sealed partial class LanTransport : ILanSender, IFrameReader
{
    private static readonly TimeSpan LogEvery = TimeSpan.FromMinutes(1);

    private readonly Captures _captures;
    private readonly Membership _membership;
    private readonly SpeakerMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<LanTransport> _logger;
    private readonly Dictionary<LanRead, (long Count, long LoggedAt)> _rejected = [];
    private volatile LanKeys? _keys;
    private long _dropped;

    public LanTransport(Captures captures, Membership membership, SpeakerMetrics metrics, TimeProvider time, ILogger<LanTransport> logger)
    {
        _captures = captures;
        _membership = membership;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        captures.Lan = this;
        captures.Beats = OnBeat;
        membership.Sender = this;
    }

    /// <summary>The cluster's keys, from the Secret; null until read.</summary>
    public LanKeys? Keys
    {
        get => _keys;
        set => _keys = value;
    }

    public void Send(LanMessage message, MacAddress destination)
    {
        if (_keys is not { } keys)
        {
            return;
        }

        Span<byte> frame = stackalloc byte[LanFrames.MaxFrame];
        foreach (var capture in _captures.Open.Where(c => !c.Failed))
        {
            if (!capture.Send(frame[..LanFrames.Write(message, capture.Mac, destination, keys, frame)]))
            {
                _captures.SendFailed();
            }
        }
    }

    /// <summary>
    /// Reads the beats waiting on every capture (the heartbeat thread, before each tick), and tells the membership when
    /// a capture dropped frames meanwhile: silence may then be ours.
    /// </summary>
    public void ReadBeats()
    {
        _captures.ReadBeats();
        var dropped = _captures.Dropped();
        if (dropped > Interlocked.Exchange(ref _dropped, dropped) && dropped > 0)
        {
            _membership.SawDrops();
        }
    }

    void IFrameReader.OnFrame(InterfaceCapture capture, ReadOnlySpan<byte> frame) => Read(capture, frame, _time.GetTimestamp());

    private void OnBeat(InterfaceCapture capture, ReadOnlySpan<byte> frame, TimeSpan age) =>
        Read(capture, frame, _time.GetTimestamp() - (long)(age.TotalSeconds * _time.TimestampFrequency));

    private void Read(InterfaceCapture capture, ReadOnlySpan<byte> frame, long receivedAt)
    {
        if (_keys is not { } keys)
        {
            return;
        }

        var read = LanFrames.TryRead(frame, keys, out var message, out var source);
        if (read == LanRead.Ok)
        {
            _membership.Receive(message!, source, receivedAt);
        }
        else if (read != LanRead.Foreign)
        {
            Rejected(read, capture.Name, MacAddress.Read(frame[6..]));
        }
    }

    private void Rejected(LanRead why, string @interface, MacAddress from)
    {
        _metrics.LanMessageRejected(why);
        long count;
        lock (_rejected)
        {
            var (total, loggedAt) = _rejected.GetValueOrDefault(why);
            var now = _time.GetTimestamp();
            if (loggedAt != 0 && _time.GetElapsedTime(loggedAt, now) < LogEvery)
            {
                _rejected[why] = (total + 1, loggedAt);
                return;
            }

            count = total + 1;
            _rejected[why] = (0, now);
        }

        LogRejected(count, why, @interface, from);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rejected {Count} speaker messages ({Reason}) since the last report, the latest on {Interface} from {Source}: forged, damaged, or signed with a key this speaker lacks")]
    private partial void LogRejected(long count, LanRead reason, string @interface, MacAddress source);
}
