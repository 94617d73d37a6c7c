using System.Buffers.Binary;
using System.Text;

namespace LbAllocator.Speaker;

/// <summary>
/// The speakers' heartbeat on the LAN: a broadcast Ethernet frame with the IEEE local experimental EtherType
/// 0x88B5, sent every heartbeat interval on each interface a speaker announces on, so "alive" means "heard on
/// this segment", which is who can answer ARP and NDP there. Payload after the Ethernet header (big-endian):
/// <code>
/// 0  "LBHB"   magic
/// 4  1        version; frames of another version are ignored
/// 5  flags    bit 0: leaving (the sender stopped answering; count it dead now)
/// 6  u16      the sender's heartbeat interval, ms
/// 8  u16      the sender's dead interval, ms: how long it may go unheard before it counts as dead
/// 10 u32      sequence number
/// 14 u8       n, the length of the node name (1-253)
/// 15 n bytes  the node name (a DNS subdomain: a-z, 0-9, '-', '.')
/// </code>
/// Padded to the Ethernet minimum of 60 bytes.
/// </summary>
/// <param name="Interval">How often the sender sends.</param>
/// <param name="DeadInterval">How long the sender may go unheard before others count it dead (the judge takes the longer of this and its own).</param>
public readonly record struct Heartbeat(string Node, uint Sequence, TimeSpan Interval, TimeSpan DeadInterval, bool Leaving)
{
    public const ushort EtherType = 0x88B5;
    public const int MaxNameLength = 253;
    public const int MaxLength = HeaderLength + PayloadHeader + MaxNameLength;

    /// <summary>Every heartbeat: read in batches at each beat, so peers' beats wake nothing (see Announcer).</summary>
    public const string CaptureFilter = "ether proto 0x88b5";

    /// <summary>Leaving heartbeats only (flags, frame byte 19, bit 0): acted on the moment they arrive.</summary>
    public const string LeavingFilter = "ether proto 0x88b5 and ether[19] & 1 != 0";

    public const byte Version = 1;
    private const int HeaderLength = 14;
    private const int PayloadHeader = 15;
    private const int MinimumFrame = 60;
    private const byte LeavingFlag = 1;

    private static readonly System.Buffers.SearchValues<byte> NameBytes = System.Buffers.SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789-."u8);

    private static ReadOnlySpan<byte> Magic => "LBHB"u8;

    /// <summary>Writes the frame from <paramref name="ourMac"/> to broadcast; returns its length. The name must be a valid node name.</summary>
    public int Write(ReadOnlySpan<byte> ourMac, Span<byte> frame)
    {
        var nameLength = Encoding.ASCII.GetByteCount(Node);
        if (nameLength is 0 or > MaxNameLength)
        {
            throw new ArgumentException($"node name of {nameLength} bytes cannot be sent", nameof(frame));
        }

        var length = Math.Max(MinimumFrame, HeaderLength + PayloadHeader + nameLength);
        frame[..length].Clear();
        frame[..6].Fill(0xff);
        ourMac.CopyTo(frame[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], EtherType);
        var payload = frame[HeaderLength..];
        Magic.CopyTo(payload);
        payload[4] = Version;
        payload[5] = Leaving ? LeavingFlag : (byte)0;
        BinaryPrimitives.WriteUInt16BigEndian(payload[6..], Milliseconds(Interval));
        BinaryPrimitives.WriteUInt16BigEndian(payload[8..], Milliseconds(DeadInterval));
        BinaryPrimitives.WriteUInt32BigEndian(payload[10..], Sequence);
        payload[14] = (byte)nameLength;
        Encoding.ASCII.GetBytes(Node, payload[PayloadHeader..]);
        return length;
    }

    /// <summary>
    /// Reads a heartbeat from another host; false for anything else or anything malformed (wrong type, magic
    /// or version, zero timings, a name that is empty, too long, cut short or not a node name), and for our own.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> frame, ReadOnlySpan<byte> ourMac, out Heartbeat heartbeat)
    {
        heartbeat = default;
        if (frame.Length < HeaderLength + PayloadHeader + 1
            || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != EtherType
            || frame[6..12].SequenceEqual(ourMac))
        {
            return false;
        }

        var payload = frame[HeaderLength..];
        var interval = BinaryPrimitives.ReadUInt16BigEndian(payload[6..]);
        var dead = BinaryPrimitives.ReadUInt16BigEndian(payload[8..]);
        var nameLength = payload[14];
        if (!payload[..4].SequenceEqual(Magic) || payload[4] != Version || interval == 0 || dead < interval
            || nameLength == 0 || PayloadHeader + nameLength > payload.Length)
        {
            return false;
        }

        var name = payload.Slice(PayloadHeader, nameLength);
        if (name.IndexOfAnyExcept(NameBytes) >= 0)
        {
            return false;
        }

        heartbeat = new Heartbeat(
            Encoding.ASCII.GetString(name),
            BinaryPrimitives.ReadUInt32BigEndian(payload[10..]),
            TimeSpan.FromMilliseconds(interval),
            TimeSpan.FromMilliseconds(dead),
            (payload[5] & LeavingFlag) != 0);
        return true;
    }

    /// <summary>Whether the EtherType says heartbeat: the cheap test the capture thread makes before anything else.</summary>
    public static bool IsHeartbeat(ReadOnlySpan<byte> frame) => frame.Length >= HeaderLength && BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) == EtherType;

    private static ushort Milliseconds(TimeSpan span) => (ushort)Math.Clamp(span.TotalMilliseconds, 1, ushort.MaxValue);
}
