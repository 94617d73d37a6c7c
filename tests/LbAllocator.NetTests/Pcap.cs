namespace LbAllocator.NetTests;

/// <summary>Writes Ethernet frames to a classic pcap file, for tcpreplay to put on the wire, and reads them back.</summary>
public static class Pcap
{
    /// <summary>The frames of a classic pcap file (tcpdump's -w, microsecond timestamps, either byte order).</summary>
    public static List<byte[]> Read(string path)
    {
        using var file = new BinaryReader(File.OpenRead(path));
        var swapped = file.ReadUInt32() != 0xa1b2c3d4u;
        file.ReadBytes(20);
        var frames = new List<byte[]>();
        while (file.BaseStream.Position + 16 <= file.BaseStream.Length)
        {
            file.ReadBytes(8);
            var length = file.ReadUInt32();
            file.ReadUInt32();
            frames.Add(file.ReadBytes((int)(swapped ? System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(length) : length)));
        }

        return frames;
    }

    public static void Write(string path, IEnumerable<byte[]> frames)
    {
        using var file = new BinaryWriter(File.Create(path));
        file.Write(0xa1b2c3d4u); // magic, version 2.4, no time zone, no accuracy, snaplen, link type Ethernet
        file.Write((ushort)2);
        file.Write((ushort)4);
        file.Write(0);
        file.Write(0u);
        file.Write(65535u);
        file.Write(1u);
        var i = 0;
        foreach (var frame in frames)
        {
            file.Write((uint)(i / 1_000_000));
            file.Write((uint)(i % 1_000_000));
            file.Write((uint)frame.Length);
            file.Write((uint)frame.Length);
            file.Write(frame);
            i++;
        }
    }
}
