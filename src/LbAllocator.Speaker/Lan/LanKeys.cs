using System.Buffers.Binary;
using System.Security.Cryptography;

namespace LbAllocator.Speaker.Lan;

/// <summary>
/// The cluster's keys for the speakers' LAN messages: one signs (the Secret's <see cref="SigningEntry"/>), every key in
/// the Secret is accepted, so a key can be rotated without two speakers ever refusing each other (add the new key
/// under another name, then make it <see cref="SigningEntry"/> once every speaker has it, then remove the old one).
/// A key is known by its id, the first four bytes of its SHA-256: the id may be logged, the key never.
/// </summary>
public sealed class LanKeys
{
    /// <summary>The Secret's entry holding the key that signs.</summary>
    public const string SigningEntry = Kubernetes.SpeakerKeySecret.SigningEntry;

    /// <summary>Shorter keys are refused: a key is a random secret, not a password.</summary>
    public const int MinimumLength = 16;

    private readonly Dictionary<uint, byte[]> _accepted;

    private LanKeys(byte[] signing, Dictionary<uint, byte[]> accepted)
    {
        SigningKey = signing;
        SigningId = IdOf(signing);
        _accepted = accepted;
    }

    public uint SigningId { get; }

    internal byte[] SigningKey { get; }

    /// <summary>The ids of every accepted key, in order: what a speaker reports it holds.</summary>
    public IReadOnlyList<uint> Ids => [.. _accepted.Keys.Order()];

    /// <summary>
    /// The keys of a Secret's data, or null with why when it cannot sign: no <see cref="SigningEntry"/>, or a key shorter
    /// than <see cref="MinimumLength"/> bytes (the entry is named, never its value).
    /// </summary>
    public static LanKeys? From(IReadOnlyDictionary<string, byte[]> data, out string? problem)
    {
        problem = null;
        if (!data.TryGetValue(SigningEntry, out var signing))
        {
            problem = $"it has no \"{SigningEntry}\" entry";
            return null;
        }

        var accepted = new Dictionary<uint, byte[]>();
        foreach (var (name, key) in data.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            if (key.Length < MinimumLength)
            {
                problem = $"its entry \"{name}\" holds {key.Length} bytes, fewer than {MinimumLength}";
                return null;
            }

            accepted[IdOf(key)] = key;
        }

        return new LanKeys(signing, accepted);
    }

    /// <summary>Signs as <paramref name="signing"/> does and accepts what either accepts: the keys during a change.</summary>
    public static LanKeys Combine(LanKeys signing, LanKeys also)
    {
        var accepted = new Dictionary<uint, byte[]>(signing._accepted);
        foreach (var (id, key) in also._accepted)
        {
            accepted[id] = key;
        }

        return new LanKeys(signing.SigningKey, accepted);
    }

    /// <summary>Whether both sign with the same key and accept the same ones.</summary>
    public bool SameAs(LanKeys other) => SigningId == other.SigningId && Ids.SequenceEqual(other.Ids);

    public static uint IdOf(ReadOnlySpan<byte> key)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(key, hash);
        return BinaryPrimitives.ReadUInt32BigEndian(hash);
    }

    /// <summary>"9f86d081": an id as logs and metrics show it.</summary>
    public static string Text(uint id) => id.ToString("x8", System.Globalization.CultureInfo.InvariantCulture);

    internal bool TryGet(uint id, out byte[] key) => _accepted.TryGetValue(id, out key!);
}
