namespace LbAllocator.NetTests;

/// <summary>Writes Ethernet frames to a classic pcap file, for tcpreplay to put on the wire.</summary>
public static class Pcap
{
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
