using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using LbAllocator.Speaker.Lan;

namespace LbAllocator.Speaker.Tests;

/// <summary>The speakers' LAN messages on the wire: every kind round trips, every byte is authenticated, and what is not ours or is damaged is refused with why.</summary>
public class LanFramesTests
{
    private static readonly MacAddress From = new(0x02_00_00_00_00_01);
    private static readonly MacAddress To = new(0x02_00_00_00_00_02);

    public static LanKeys Keys(params (string Name, byte[] Key)[] entries) =>
        LanKeys.From(entries.ToDictionary(e => e.Name, e => e.Key), out var problem) ?? throw new InvalidOperationException(problem);

    public static readonly LanKeys Cluster = Keys(("key", Enumerable.Range(1, 32).Select(i => (byte)i).ToArray()));

    public static TheoryData<LanMessage> Messages() =>
    [
        new Beat("node-1", 1_765_000_000_000, 42, TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(500), 1_765_000_000_123, 7, 0xDEADBEEF_01020304),
        new Join("node-1.example.com", 5, 1, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(3), Joined: false),
        new Join("n", 5, 2, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(1), Joined: true),
        new Leave("node-1", 5, 3),
        new Suspect("node-1", 5, 4, "node-2", 77, TimeSpan.FromSeconds(1)),
        new SyncRequest("node-1", 5, 5),
        new Sync("node-1", 5, 6, 99, 3, 0, 2, [new ViewEntry("a", 1, false, From), new ViewEntry("b.c-d", ulong.MaxValue, true, To)]),
        new Sync("node-1", 5, 7, 99, 3, 1, 2, []),
    ];

    [Theory]
    [MemberData(nameof(Messages))]
    public void Every_kind_round_trips_signed_with_its_addresses(LanMessage message)
    {
        var frame = Write(message);

        Assert.Equal(LanRead.Ok, LanFrames.TryRead(frame, Cluster, out var read, out var source));
        Assert.Equal(From, source);
        Assert.Equal(To, MacAddress.Read(frame));
        Assert.Equal(LanFrames.EtherType, BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)));
        Assert.Equal((byte)message.Kind, frame[LanFrames.KindOffset]);
        Assert.True(frame.Length >= 60);
        // Records compare lists by reference: compare a Sync's entries apart.
        if (message is Sync sync)
        {
            var got = Assert.IsType<Sync>(read);
            Assert.Equal(sync.Entries, got.Entries);
            Assert.Equal(sync with { Entries = [] }, got with { Entries = [] });
        }
        else
        {
            Assert.Equal(message, read);
        }
    }

    [Fact]
    public void The_layout_is_as_documented_and_the_tag_is_the_truncated_HMAC_of_everything_before_it()
    {
        var key = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
        var frame = Write(new Leave("ab", 0x0102030405060708, 0x1112131415161718));
        var payload = frame.AsSpan(14);

        Assert.Equal("LBHB"u8.ToArray(), payload[..4].ToArray());
        Assert.Equal(2, payload[4]);
        Assert.Equal((byte)LanKind.Leave, payload[5]);
        var length = BinaryPrimitives.ReadUInt16BigEndian(payload[6..]);
        Assert.Equal(28 + 1 + 2 + 16, length);
        Assert.Equal(LanKeys.IdOf(key), BinaryPrimitives.ReadUInt32BigEndian(payload[8..]));
        Assert.Equal(0x0102030405060708UL, BinaryPrimitives.ReadUInt64BigEndian(payload[12..]));
        Assert.Equal(0x1112131415161718UL, BinaryPrimitives.ReadUInt64BigEndian(payload[20..]));
        Assert.Equal(2, payload[28]);
        Assert.Equal("ab", Encoding.ASCII.GetString(payload.Slice(29, 2)));
        var tag = HMACSHA256.HashData(key, frame.AsSpan(0, 14 + length - 16))[..16];
        Assert.Equal(tag, payload.Slice(length - 16, 16).ToArray());
        Assert.All(frame.AsSpan(14 + length).ToArray(), b => Assert.Equal(0, b)); // padding to 60 bytes
    }

    [Fact]
    public void Changing_any_byte_of_a_frame_up_to_its_tag_makes_it_refused()
    {
        var frame = Write(new Beat("node-1", 1, 2, TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(500), 3, 4, 5));
        var length = 14 + BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(20));
        for (var i = 0; i < length; i++)
        {
            var damaged = (byte[])frame.Clone();
            damaged[i] ^= 0x01;
            var read = LanFrames.TryRead(damaged, Cluster, out var message, out _);
            Assert.True(read != LanRead.Ok, $"byte {i} changed and the frame was still taken");
            Assert.Null(message);
        }
    }

    [Fact]
    public void A_frame_signed_with_another_key_is_refused_and_one_with_a_key_id_we_lack_says_so()
    {
        var other = Keys(("key", Enumerable.Repeat((byte)7, 32).ToArray()));
        var frame = new byte[LanFrames.MaxFrame];
        var length = LanFrames.Write(new Leave("node-1", 1, 1), From, To, other, frame);

        Assert.Equal(LanRead.UnknownKey, LanFrames.TryRead(frame.AsSpan(0, length), Cluster, out _, out _));

        // A forger who copies our key id still cannot make the tag.
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(14 + 8), Cluster.SigningId);
        Assert.Equal(LanRead.BadTag, LanFrames.TryRead(frame.AsSpan(0, length), Cluster, out _, out _));
    }

    [Fact]
    public void During_a_rotation_both_keys_are_taken_and_the_one_named_key_signs()
    {
        var old = Enumerable.Repeat((byte)1, 32).ToArray();
        var fresh = Enumerable.Repeat((byte)2, 32).ToArray();
        var before = Keys(("key", old));
        var during = Keys(("key", fresh), ("previous", old));

        Assert.Equal(LanKeys.IdOf(fresh), during.SigningId);
        Assert.Equal([LanKeys.IdOf(old), LanKeys.IdOf(fresh)], during.Ids.Order());
        var signedOld = Write(new Leave("a", 1, 1), before);
        var signedNew = Write(new Leave("a", 1, 1), during);
        Assert.Equal(LanRead.Ok, LanFrames.TryRead(signedOld, during, out _, out _));
        Assert.Equal(LanRead.Ok, LanFrames.TryRead(signedNew, during, out _, out _));
        Assert.Equal(LanRead.UnknownKey, LanFrames.TryRead(signedNew, before, out _, out _));
    }

    [Theory]
    [InlineData("key", 15, "its entry \"key\" holds 15 bytes, fewer than 16")]
    [InlineData("other", 32, "it has no \"key\" entry")]
    public void A_secret_that_cannot_sign_is_refused_naming_the_entry_and_never_the_key(string entry, int length, string problem)
    {
        Assert.Null(LanKeys.From(new Dictionary<string, byte[]> { [entry] = new byte[length] }, out var why));
        Assert.Equal(problem, why);
    }

    [Fact]
    public void Frames_that_are_not_ours_are_foreign_and_damaged_ones_malformed()
    {
        var arp = new byte[60];
        arp[12] = 0x08;
        arp[13] = 0x06;
        Assert.Equal(LanRead.Foreign, LanFrames.TryRead(arp, Cluster, out _, out _));

        var version1 = Write(new Leave("a", 1, 1));
        version1[14 + 4] = 1; // the unauthenticated heartbeat of earlier releases
        Assert.Equal(LanRead.Foreign, LanFrames.TryRead(version1, Cluster, out _, out _));

        var cut = Write(new Leave("a", 1, 1))[..50];
        Assert.Equal(LanRead.Malformed, LanFrames.TryRead(cut, Cluster, out _, out _));
    }

    [Fact]
    public void A_signed_frame_with_a_name_that_is_no_node_name_or_an_unknown_kind_is_malformed()
    {
        var frame = Write(new Leave("ab", 1, 1));
        frame[14 + 29] = (byte)'A';
        Resign(frame);
        Assert.Equal(LanRead.Malformed, LanFrames.TryRead(frame, Cluster, out _, out _));

        var kind = Write(new Leave("ab", 1, 1));
        kind[LanFrames.KindOffset] = 99;
        Resign(kind);
        Assert.Equal(LanRead.Malformed, LanFrames.TryRead(kind, Cluster, out _, out _));
    }

    [Fact]
    public void A_large_view_is_cut_into_parts_that_each_fit_in_a_frame()
    {
        var entries = Enumerable.Range(0, 1000).Select(i => new ViewEntry($"node-{i:D4}.rack-{i % 40:D2}.example.com", (ulong)i, i % 3 == 0, new MacAddress((ulong)i))).ToList();
        var parts = LanFrames.SyncParts(entries, "node-0001");

        Assert.Equal(entries, parts.SelectMany(p => p));
        Assert.True(parts.Count is > 50 and < 80, $"{parts.Count} parts");
        var frame = new byte[LanFrames.MaxFrame];
        for (var i = 0; i < parts.Count; i++)
        {
            var length = LanFrames.Write(new Sync("node-0001", 1, (ulong)i, 2, 3, i, parts.Count, parts[i]), From, To, Cluster, frame);
            Assert.True(length <= LanFrames.MaxSyncFrame, $"part {i}: {length} bytes");
            Assert.Equal(LanRead.Ok, LanFrames.TryRead(frame.AsSpan(0, length), Cluster, out var read, out _));
            Assert.Equal(parts[i], ((Sync)read!).Entries);
        }
    }

    [Fact]
    public void Capture_filters_select_beats_to_us_apart_from_the_rest()
    {
        Assert.Equal(LanFrames.OtherFilterExpression, $"ether proto 0x{LanFrames.EtherType:x4} and ether[{LanFrames.KindOffset}] != {(byte)LanKind.Beat}");
        Assert.Equal("ether proto 0x88b5 and ether[19] = 1 and ether dst 02:00:00:00:00:02", LanFrames.BeatFilter(To));
        Assert.Equal("ether proto 0x88b5 and ether[19] != 1", LanFrames.OtherFilter);
    }

    private static byte[] Write(LanMessage message, LanKeys? keys = null)
    {
        var frame = new byte[LanFrames.MaxFrame];
        var length = LanFrames.Write(message, From, To, keys ?? Cluster, frame);
        return frame[..length];
    }

    private static void Resign(byte[] frame)
    {
        var length = BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(20));
        HMACSHA256.HashData(Cluster.SigningKey, frame.AsSpan(0, 14 + length - 16))[..16].CopyTo(frame, 14 + length - 16);
    }
}
