using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace LbAllocator.Speaker.Lan;

/// <summary>Why a frame was not taken as a speakers' message.</summary>
public enum LanRead
{
    Ok,

    /// <summary>Not a speakers' message of this version at all (another EtherType, magic or version): ignored, not counted.</summary>
    Foreign,

    /// <summary>Cut short, inconsistent lengths, an unknown kind, a name that is no node name.</summary>
    Malformed,

    /// <summary>Signed with a key this speaker does not hold.</summary>
    UnknownKey,

    /// <summary>The authentication tag does not match: forged, or altered on the way.</summary>
    BadTag,
}

/// <summary>
/// The speakers' LAN messages on the wire: Ethernet frames of the IEEE local experimental EtherType 0x88B5, each
/// authenticated with HMAC-SHA256 (truncated to 128 bits) over the whole frame, Ethernet header included, so neither
/// the payload nor the addresses can be changed or a message redirected. Big-endian:
/// <code>
/// 0   "LBHB"   magic
/// 4   2        version; frames of another version are ignored
/// 5   kind     <see cref="LanKind"/>
/// 6   u16      length of the payload, tag included (the frame may be padded after it)
/// 8   u32      key id (<see cref="LanKeys.IdOf"/>)
/// 12  u64      sender epoch
/// 20  u64      sequence number
/// 28  u8       n, the sender's name length (1-253), then n bytes of name (a-z, 0-9, '-', '.')
/// ..  body     by kind (see the Write methods)
/// end 16 bytes tag
/// </code>
/// Spans only, so the capture thread reads and rejects frames without allocating.
/// </summary>
public static class LanFrames
{
    public const ushort EtherType = 0x88B5;
    public const byte Version = 2;
    public const int MaxFrame = 1514;

    /// <summary>The largest frame a view is sent in: the captures keep this much of each frame.</summary>
    public const int MaxSyncFrame = 768;

    /// <summary>Every speaker message but beats (see <see cref="OtherFilter"/>), as a constant for composing filters.</summary>
    public const string OtherFilterExpression = "ether proto 0x88b5 and ether[19] != 1";
    public const int TagLength = 16;
    public const int MaxNameLength = 253;

    /// <summary>Frame offset of the kind byte, for capture filters.</summary>
    public const int KindOffset = EthernetHeader + 5;

    private const int EthernetHeader = 14;
    private const int NameOffset = 28;
    private const int MinimumFrame = 60;
    private const int SyncEntryFixed = 1 + 8 + 1 + 6;
    private const int SyncHeader = 20;

    private static readonly SearchValues<byte> NameBytes = SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789-."u8);

    private static ReadOnlySpan<byte> Magic => "LBHB"u8;

    /// <summary>The capture filter for beats addressed to <paramref name="mac"/>: read in batches, a beat wakes no thread.</summary>
    public static string BeatFilter(MacAddress mac) => $"ether proto 0x{EtherType:x4} and ether[{KindOffset}] = {(byte)LanKind.Beat} and ether dst {mac}";

    /// <summary>The capture filter for every other message: acted on as it arrives.</summary>
    public static string OtherFilter => OtherFilterExpression;

    /// <summary>Writes the message from <paramref name="source"/> to <paramref name="destination"/>, signed; returns the frame's length.</summary>
    public static int Write(LanMessage message, MacAddress source, MacAddress destination, LanKeys keys, Span<byte> frame)
    {
        var name = Name(message.From);
        frame[..MaxFrame].Clear();
        destination.Write(frame);
        source.Write(frame[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], EtherType);
        var payload = frame[EthernetHeader..];
        Magic.CopyTo(payload);
        payload[4] = Version;
        payload[5] = (byte)message.Kind;
        BinaryPrimitives.WriteUInt32BigEndian(payload[8..], keys.SigningId);
        BinaryPrimitives.WriteUInt64BigEndian(payload[12..], message.Epoch);
        BinaryPrimitives.WriteUInt64BigEndian(payload[20..], message.Sequence);
        payload[NameOffset] = (byte)name.Length;
        name.CopyTo(payload[(NameOffset + 1)..]);
        var body = payload[(NameOffset + 1 + name.Length)..];
        var bodyLength = message switch
        {
            Beat b => WriteBeat(b, body),
            Join j => WriteJoin(j, body),
            Suspect s => WriteSubject(s, body),
            Sync s => WriteSync(s, body),
            Leave or SyncRequest => 0,
            _ => throw new ArgumentException($"unknown message {message.GetType().Name}", nameof(message)),
        };
        var length = NameOffset + 1 + name.Length + bodyLength + TagLength;
        if (EthernetHeader + length > MaxFrame)
        {
            throw new ArgumentException($"a {message.Kind} of {EthernetHeader + length} bytes does not fit in a frame", nameof(message));
        }

        BinaryPrimitives.WriteUInt16BigEndian(payload[6..], (ushort)length);
        Tag(keys.SigningKey, frame[..(EthernetHeader + length - TagLength)], frame.Slice(EthernetHeader + length - TagLength, TagLength));
        return Math.Max(MinimumFrame, EthernetHeader + length);
    }

    /// <summary>Reads and authenticates a frame; the message only when <see cref="LanRead.Ok"/>.</summary>
    public static LanRead TryRead(ReadOnlySpan<byte> frame, LanKeys keys, out LanMessage? message, out MacAddress source)
    {
        message = null;
        source = default;
        if (frame.Length < EthernetHeader + NameOffset + 1 || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != EtherType)
        {
            return LanRead.Foreign;
        }

        var payload = frame[EthernetHeader..];
        if (!payload[..4].SequenceEqual(Magic) || payload[4] != Version)
        {
            return LanRead.Foreign;
        }

        var length = BinaryPrimitives.ReadUInt16BigEndian(payload[6..]);
        var nameLength = payload[NameOffset];
        if (length > payload.Length || length < NameOffset + 1 + nameLength + TagLength || nameLength == 0)
        {
            return LanRead.Malformed;
        }

        if (!keys.TryGet(BinaryPrimitives.ReadUInt32BigEndian(payload[8..]), out var key))
        {
            return LanRead.UnknownKey;
        }

        Span<byte> expected = stackalloc byte[TagLength];
        Tag(key, frame[..(EthernetHeader + length - TagLength)], expected);
        if (!CryptographicOperations.FixedTimeEquals(expected, frame.Slice(EthernetHeader + length - TagLength, TagLength)))
        {
            return LanRead.BadTag;
        }

        var nameBytes = payload.Slice(NameOffset + 1, nameLength);
        if (nameBytes.IndexOfAnyExcept(NameBytes) >= 0)
        {
            return LanRead.Malformed;
        }

        source = MacAddress.Read(frame[6..]);
        var from = Encoding.ASCII.GetString(nameBytes);
        var epoch = BinaryPrimitives.ReadUInt64BigEndian(payload[12..]);
        var sequence = BinaryPrimitives.ReadUInt64BigEndian(payload[20..]);
        var body = payload[(NameOffset + 1 + nameLength)..(length - TagLength)];
        message = (LanKind)payload[5] switch
        {
            LanKind.Beat => ReadBeat(from, epoch, sequence, body),
            LanKind.Join when ReadTimings(body) is var (interval, dead) && body.Length == 5 && interval > TimeSpan.Zero && dead >= interval && body[4] <= 1
                => new Join(from, epoch, sequence, interval, dead, Joined: body[4] == 1),
            LanKind.Leave when body.IsEmpty => new Leave(from, epoch, sequence),
            LanKind.Suspect => ReadSubject(from, epoch, sequence, body),
            LanKind.SyncRequest when body.IsEmpty => new SyncRequest(from, epoch, sequence),
            LanKind.Sync => ReadSync(from, epoch, sequence, body),
            _ => null,
        };
        return message is null ? LanRead.Malformed : LanRead.Ok;
    }

    /// <summary>The view cut into parts that each fit in a frame of <see cref="MaxSyncFrame"/> bytes (one empty part for an empty view).</summary>
    public static IReadOnlyList<IReadOnlyList<ViewEntry>> SyncParts(IReadOnlyList<ViewEntry> entries, string sender)
    {
        var room = MaxSyncFrame - EthernetHeader - NameOffset - 1 - Name(sender).Length - TagLength - SyncHeader;
        var parts = new List<IReadOnlyList<ViewEntry>>();
        var part = new List<ViewEntry>();
        var used = 0;
        foreach (var entry in entries)
        {
            var size = SyncEntryFixed + entry.Name.Length;
            if (used + size > room)
            {
                parts.Add(part);
                (part, used) = ([], 0);
            }

            part.Add(entry);
            used += size;
        }

        parts.Add(part);
        return parts;
    }

    /// <summary>Whether a name can be sent: a node name of at most <see cref="MaxNameLength"/> bytes.</summary>
    public static bool IsName(string name) =>
        name.Length is > 0 and <= MaxNameLength && Encoding.ASCII.GetBytes(name).AsSpan().IndexOfAnyExcept(NameBytes) < 0;

    private static byte[] Name(string name) =>
        IsName(name) ? Encoding.ASCII.GetBytes(name) : throw new ArgumentException($"\"{name}\" cannot be sent: not a node name of 1-{MaxNameLength} bytes", nameof(name));

    private static void Tag(byte[] key, ReadOnlySpan<byte> signed, Span<byte> tag)
    {
        Span<byte> full = stackalloc byte[HMACSHA256.HashSizeInBytes];
        HMACSHA256.HashData(key, signed, full);
        full[..TagLength].CopyTo(tag);
    }

    // Beat: interval ms u16, dead ms u16, echo epoch u64, echo sequence u64, digest u64.
    private static int WriteBeat(Beat beat, Span<byte> body)
    {
        WriteTimings(beat.Interval, beat.DeadInterval, body);
        BinaryPrimitives.WriteUInt64BigEndian(body[4..], beat.EchoEpoch);
        BinaryPrimitives.WriteUInt64BigEndian(body[12..], beat.EchoSequence);
        BinaryPrimitives.WriteUInt64BigEndian(body[20..], beat.Digest);
        return 28;
    }

    private static Beat? ReadBeat(string from, ulong epoch, ulong sequence, ReadOnlySpan<byte> body)
    {
        if (body.Length != 28 || ReadTimings(body) is not var (interval, dead) || interval <= TimeSpan.Zero || dead < interval)
        {
            return null;
        }

        return new Beat(from, epoch, sequence, interval, dead,
            BinaryPrimitives.ReadUInt64BigEndian(body[4..]), BinaryPrimitives.ReadUInt64BigEndian(body[12..]), BinaryPrimitives.ReadUInt64BigEndian(body[20..]));
    }

    // Join: interval ms u16, dead ms u16, joined u8.
    private static int WriteJoin(Join join, Span<byte> body)
    {
        WriteTimings(join.Interval, join.DeadInterval, body);
        body[4] = join.Joined ? (byte)1 : (byte)0;
        return 5;
    }

    private static int WriteTimings(TimeSpan interval, TimeSpan dead, Span<byte> body)
    {
        BinaryPrimitives.WriteUInt16BigEndian(body, Milliseconds(interval));
        BinaryPrimitives.WriteUInt16BigEndian(body[2..], Milliseconds(dead));
        return 4;
    }

    private static (TimeSpan Interval, TimeSpan Dead)? ReadTimings(ReadOnlySpan<byte> body) => body.Length < 4 ? null
        : (TimeSpan.FromMilliseconds(BinaryPrimitives.ReadUInt16BigEndian(body)), TimeSpan.FromMilliseconds(BinaryPrimitives.ReadUInt16BigEndian(body[2..])));

    // Suspect: lifetime ms u16, subject epoch u64, subject name length u8, name.
    private static int WriteSubject(Suspect suspect, Span<byte> body)
    {
        var name = Name(suspect.Subject);
        BinaryPrimitives.WriteUInt16BigEndian(body, Milliseconds(suspect.Lifetime));
        BinaryPrimitives.WriteUInt64BigEndian(body[2..], suspect.SubjectEpoch);
        body[10] = (byte)name.Length;
        name.CopyTo(body[11..]);
        return 11 + name.Length;
    }

    private static Suspect? ReadSubject(string from, ulong epoch, ulong sequence, ReadOnlySpan<byte> body)
    {
        if (body.Length < 12 || body.Length != 11 + body[10] || body[11..].IndexOfAnyExcept(NameBytes) >= 0)
        {
            return null;
        }

        return new Suspect(from, epoch, sequence, Encoding.ASCII.GetString(body[11..]), BinaryPrimitives.ReadUInt64BigEndian(body[2..]),
            TimeSpan.FromMilliseconds(BinaryPrimitives.ReadUInt16BigEndian(body)));
    }

    // Sync: echo epoch u64, echo sequence u64, part u8, parts u8, count u16, then per entry: name length u8, name,
    // epoch u64, flags u8 (bit 0: dead), MAC (6).
    private static int WriteSync(Sync sync, Span<byte> body)
    {
        BinaryPrimitives.WriteUInt64BigEndian(body, sync.EchoEpoch);
        BinaryPrimitives.WriteUInt64BigEndian(body[8..], sync.EchoSequence);
        body[16] = (byte)sync.Part;
        body[17] = (byte)sync.Parts;
        BinaryPrimitives.WriteUInt16BigEndian(body[18..], (ushort)sync.Entries.Count);
        var at = SyncHeader;
        foreach (var entry in sync.Entries)
        {
            var name = Name(entry.Name);
            if (at + SyncEntryFixed + name.Length > body.Length)
            {
                throw new ArgumentException("the view does not fit in one frame: send it in SyncParts", nameof(sync));
            }

            body[at++] = (byte)name.Length;
            name.CopyTo(body[at..]);
            at += name.Length;
            BinaryPrimitives.WriteUInt64BigEndian(body[at..], entry.Epoch);
            body[at + 8] = entry.Dead ? (byte)1 : (byte)0;
            entry.Mac.Write(body[(at + 9)..]);
            at += 15;
        }

        return at;
    }

    private static Sync? ReadSync(string from, ulong epoch, ulong sequence, ReadOnlySpan<byte> body)
    {
        if (body.Length < SyncHeader || body[16] >= body[17])
        {
            return null;
        }

        var count = BinaryPrimitives.ReadUInt16BigEndian(body[18..]);
        var entries = new List<ViewEntry>(Math.Min((int)count, 128));
        var at = SyncHeader;
        for (var i = 0; i < count; i++)
        {
            if (at >= body.Length || body[at] == 0 || at + SyncEntryFixed + body[at] > body.Length)
            {
                return null;
            }

            var name = body.Slice(at + 1, body[at]);
            if (name.IndexOfAnyExcept(NameBytes) >= 0 || body[at + 1 + name.Length + 8] > 1)
            {
                return null;
            }

            var fixedAt = at + 1 + name.Length;
            entries.Add(new ViewEntry(Encoding.ASCII.GetString(name), BinaryPrimitives.ReadUInt64BigEndian(body[fixedAt..]), body[fixedAt + 8] == 1, MacAddress.Read(body[(fixedAt + 9)..])));
            at = fixedAt + 15;
        }

        return at == body.Length
            ? new Sync(from, epoch, sequence, BinaryPrimitives.ReadUInt64BigEndian(body), BinaryPrimitives.ReadUInt64BigEndian(body[8..]), body[16], body[17], entries)
            : null;
    }

    private static ushort Milliseconds(TimeSpan span) => (ushort)Math.Clamp(span.TotalMilliseconds, 1, ushort.MaxValue);
}
