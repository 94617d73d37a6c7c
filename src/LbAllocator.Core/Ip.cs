using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace LbAllocator.Core;

public enum IpFamily
{
    IPv4,
    IPv6,
}

/// <summary>
/// An IPv4 or IPv6 address as a number, so that ranges are plain arithmetic.
/// IPv4 addresses use the low 32 bits. Ordered by family, then value.
/// </summary>
public readonly record struct Ip(IpFamily Family, UInt128 Value) : IComparable<Ip>
{
    public static UInt128 MaxValue(IpFamily family) => family == IpFamily.IPv4 ? uint.MaxValue : UInt128.MaxValue;

    public static int Bits(IpFamily family) => family == IpFamily.IPv4 ? 32 : 128;

    public int CompareTo(Ip other) =>
        Family != other.Family ? Family.CompareTo(other.Family) : Value.CompareTo(other.Value);

    public static bool operator <(Ip a, Ip b) => a.CompareTo(b) < 0;
    public static bool operator >(Ip a, Ip b) => a.CompareTo(b) > 0;
    public static bool operator <=(Ip a, Ip b) => a.CompareTo(b) <= 0;
    public static bool operator >=(Ip a, Ip b) => a.CompareTo(b) >= 0;

    /// <summary>
    /// Strict parse: IPv4 only as four decimal octets without leading zeros (so "010.0.0.1" or "1" are
    /// errors rather than silently meaning something else); IPv6 without zone or brackets.
    /// </summary>
    public static bool TryParse(string? text, out Ip ip, [NotNullWhen(false)] out string? error)
    {
        ip = default;
        text = text?.Trim();
        if (string.IsNullOrEmpty(text))
        {
            error = "empty address";
            return false;
        }

        if (text.Contains(':', StringComparison.Ordinal))
        {
            if (text.IndexOfAny(['%', '[', ']', '/']) >= 0
                || !IPAddress.TryParse(text, out var v6)
                || v6.AddressFamily != AddressFamily.InterNetworkV6)
            {
                error = $"\"{text}\" is not a valid IPv6 address";
                return false;
            }

            if (v6.IsIPv4MappedToIPv6)
            {
                error = $"\"{text}\" is an IPv4-mapped IPv6 address; write it as the IPv4 address {v6.MapToIPv4()}";
                return false;
            }

            Span<byte> bytes = stackalloc byte[16];
            v6.TryWriteBytes(bytes, out _);
            ip = new Ip(IpFamily.IPv6, BinaryPrimitives.ReadUInt128BigEndian(bytes));
            error = null;
            return true;
        }

        var parts = text.Split('.');
        uint value = 0;
        var valid = parts.Length == 4;
        foreach (var part in valid ? parts : [])
        {
            if (part.Length is < 1 or > 3
                || !part.All(char.IsAsciiDigit)
                || (part.Length > 1 && part[0] == '0')
                || !uint.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var octet)
                || octet > 255)
            {
                valid = false;
                break;
            }

            value = (value << 8) | octet;
        }

        if (!valid)
        {
            error = $"\"{text}\" is not a valid IP address";
            return false;
        }

        ip = new Ip(IpFamily.IPv4, value);
        error = null;
        return true;
    }

    public static Ip Parse(string text) =>
        TryParse(text, out var ip, out var error) ? ip : throw new FormatException(error);

    public override string ToString()
    {
        if (Family == IpFamily.IPv4)
        {
            var v = (uint)Value;
            return $"{v >> 24}.{(v >> 16) & 0xFF}.{(v >> 8) & 0xFF}.{v & 0xFF}";
        }

        Span<byte> bytes = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128BigEndian(bytes, Value);
        return new IPAddress(bytes).ToString();
    }

    public static string FamilyName(IpFamily family) => family == IpFamily.IPv4 ? "IPv4" : "IPv6";
}
