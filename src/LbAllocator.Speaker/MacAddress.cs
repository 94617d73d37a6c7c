using System.Buffers.Binary;

namespace LbAllocator.Speaker;

/// <summary>An Ethernet address held in the low 48 bits of a number: compared and stored on the capture thread without allocation.</summary>
public readonly record struct MacAddress(ulong Value)
{
    public static readonly MacAddress Broadcast = new(0xFFFF_FFFF_FFFF);

    /// <summary>The address in the first six bytes of <paramref name="bytes"/>.</summary>
    public static MacAddress Read(ReadOnlySpan<byte> bytes) =>
        new(((ulong)BinaryPrimitives.ReadUInt16BigEndian(bytes) << 32) | BinaryPrimitives.ReadUInt32BigEndian(bytes[2..]));

    /// <summary>Writes the address into the first six bytes of <paramref name="bytes"/>.</summary>
    public void Write(Span<byte> bytes)
    {
        BinaryPrimitives.WriteUInt16BigEndian(bytes, (ushort)(Value >> 32));
        BinaryPrimitives.WriteUInt32BigEndian(bytes[2..], (uint)Value);
    }

    /// <summary>Reads "02:00:00:00:00:01" (any case, colons); false for anything else.</summary>
    public static bool TryParse(string? text, out MacAddress mac)
    {
        mac = default;
        if (text is not { Length: 17 } || System.Net.NetworkInformation.PhysicalAddress.TryParse(text, out var parsed) is false || parsed is null)
        {
            return false;
        }

        mac = Read(parsed.GetAddressBytes());
        return true;
    }

    /// <summary>"02:00:00:00:00:01", as `ip link` prints it.</summary>
    public override string ToString()
    {
        Span<byte> bytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, Value);
        return string.Join(':', bytes[2..].ToArray().Select(b => b.ToString("x2")));
    }
}
