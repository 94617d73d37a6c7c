using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace LbAllocator.Core;

/// <summary>An inclusive range of addresses of one family, parsed from a CIDR, an "a-b" range or one address.</summary>
public readonly record struct IpRange
{
    public IpRange(Ip first, Ip last)
    {
        if (first.Family != last.Family || first.Value > last.Value)
        {
            throw new ArgumentException($"invalid range {first}-{last}");
        }

        First = first;
        Last = last;
    }

    public Ip First { get; }
    public Ip Last { get; }
    public IpFamily Family => First.Family;

    /// <summary>Number of addresses; saturates at UInt128.MaxValue for the whole IPv6 space (2^128 does not fit).</summary>
    public UInt128 Count => Last.Value - First.Value == UInt128.MaxValue ? UInt128.MaxValue : Last.Value - First.Value + 1;

    public bool Contains(Ip ip) => ip.Family == Family && ip.Value >= First.Value && ip.Value <= Last.Value;

    public bool Overlaps(IpRange other) =>
        other.Family == Family && other.First.Value <= Last.Value && First.Value <= other.Last.Value;

    public IpRange Intersect(IpRange other) =>
        new(First > other.First ? First : other.First, Last < other.Last ? Last : other.Last);

    /// <summary>A single address, a CIDR when the range is exactly one network, else "first-last".</summary>
    public override string ToString()
    {
        if (First == Last)
        {
            return First.ToString();
        }

        var size = Last.Value - First.Value;
        var isBlock = UInt128.IsPow2(size + 1) && (First.Value & size) == 0;
        if (size == UInt128.MaxValue)
        {
            return $"{First}/0";
        }

        return isBlock ? $"{First}/{Ip.Bits(Family) - (int)UInt128.Log2(size + 1)}" : $"{First}-{Last}";
    }

    public static bool TryParse(string? text, out IpRange range, [NotNullWhen(false)] out string? error)
    {
        range = default;
        text = text?.Trim();
        if (string.IsNullOrEmpty(text))
        {
            error = "empty address range";
            return false;
        }

        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash >= 0)
        {
            return TryParseCidr(text, slash, out range, out error);
        }

        var dash = text.IndexOf('-', StringComparison.Ordinal);
        if (dash >= 0)
        {
            if (!Ip.TryParse(text[..dash], out var first, out error) || !Ip.TryParse(text[(dash + 1)..], out var last, out error))
            {
                error = $"\"{text}\": {error}";
                return false;
            }

            if (first.Family != last.Family)
            {
                error = $"\"{text}\" mixes {Ip.FamilyName(first.Family)} and {Ip.FamilyName(last.Family)}";
                return false;
            }

            if (first.Value > last.Value)
            {
                error = $"\"{text}\": start {first} is above end {last}";
                return false;
            }

            range = new IpRange(first, last);
            return true;
        }

        if (!Ip.TryParse(text, out var single, out error))
        {
            return false;
        }

        range = new IpRange(single, single);
        return true;
    }

    public static IpRange Parse(string text) =>
        TryParse(text, out var range, out var error) ? range : throw new FormatException(error);

    /// <summary>
    /// A CIDR whose address has host bits set, written as its network ("192.0.2.5/24" is "192.0.2.0/24"), as MetalLB
    /// and Go's net.ParseCIDR read it; null for any other text. Ours refuses such a CIDR as ambiguous.
    /// </summary>
    public static string? NetworkOf(string? text)
    {
        text = text?.Trim();
        var slash = text?.IndexOf('/', StringComparison.Ordinal) ?? -1;
        if (slash < 0 || !TryParseCidrParts(text!, slash, out var address, out var prefix, out _))
        {
            return null;
        }

        var network = Network(address, prefix, out _);
        return network == address ? null : $"{network}/{prefix}";
    }

    private static bool TryParseCidr(string text, int slash, out IpRange range, [NotNullWhen(false)] out string? error)
    {
        range = default;
        if (!TryParseCidrParts(text, slash, out var address, out var prefix, out error))
        {
            return false;
        }

        var network = Network(address, prefix, out var hostMask);
        if (network != address)
        {
            // Ambiguous: the user may have meant the single address or the whole network.
            error = $"\"{text}\" has host bits set: write {network}/{prefix} for the network or {address}/{Ip.Bits(address.Family)} for one address";
            return false;
        }

        range = new IpRange(network, new Ip(address.Family, network.Value | hostMask));
        return true;
    }

    /// <summary>The address and the prefix length of "ADDRESS/PREFIX", each checked.</summary>
    private static bool TryParseCidrParts(string text, int slash, out Ip address, out int prefix, [NotNullWhen(false)] out string? error)
    {
        prefix = 0;
        if (!Ip.TryParse(text[..slash], out address, out error))
        {
            error = $"\"{text}\": {error}";
            return false;
        }

        var bits = Ip.Bits(address.Family);
        var prefixText = text[(slash + 1)..];
        if (prefixText.Length is 0 or > 3
            || !prefixText.All(char.IsAsciiDigit)
            || !int.TryParse(prefixText, NumberStyles.None, CultureInfo.InvariantCulture, out prefix)
            || prefix > bits)
        {
            error = $"\"{text}\": prefix length must be a number from 0 to {bits} for {Ip.FamilyName(address.Family)}";
            return false;
        }

        return true;
    }

    /// <summary>The network of <paramref name="address"/> under <paramref name="prefix"/>, and the mask of its host bits.</summary>
    private static Ip Network(Ip address, int prefix, out UInt128 hostMask)
    {
        var bits = Ip.Bits(address.Family);
        hostMask = prefix == bits ? UInt128.Zero : (UInt128.One << (bits - prefix)) - 1;
        return new Ip(address.Family, address.Value & ~hostMask);
    }
}
