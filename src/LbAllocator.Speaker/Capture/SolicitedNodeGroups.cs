using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using LbAllocator.Core;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker.Capture;

/// <summary>
/// The solicited-node multicast groups joined on one interface, one per owned IPv6 address (ff02::1:ffXX:XXXX), so
/// that switches that snoop MLD forward the Neighbor Solicitations for it to this node. The kernel reports each join
/// and leave by MLD (`ip -6 maddr show dev IF` lists them); disposing leaves them all.
/// </summary>
internal sealed partial class SolicitedNodeGroups(string interfaceName, int index, ILogger logger) : IDisposable
{
    private readonly Dictionary<Ip, Socket> _groups = []; // each group on the socket that holds it
    private readonly List<Socket> _sockets = [];
    private readonly HashSet<Ip> _failures = []; // as logged: each pass retries, saying nothing new

    /// <summary>Makes the groups joined exactly <paramref name="groups"/>.</summary>
    public void JoinExactly(HashSet<Ip> groups)
    {
        foreach (var (group, socket) in _groups.Where(g => !groups.Contains(g.Key)).ToList())
        {
            _groups.Remove(group);
            try
            {
                Membership(socket, SocketOptionName.DropMembership, group);
                LogMembership("Left", group, interfaceName);
            }
            catch (SocketException)
            {
                // The interface is gone, and the membership with it.
            }
        }

        _failures.IntersectWith(groups);
        foreach (var group in groups.Where(g => !_groups.ContainsKey(g)))
        {
            try
            {
                _groups[group] = Join(group);
                _failures.Remove(group);
                LogMembership("Joined", group, interfaceName);
            }
            catch (SocketException e)
            {
                if (_failures.Add(group))
                {
                    LogJoinFailed(e, interfaceName, group);
                }
            }
        }
    }

    public void Dispose()
    {
        foreach (var socket in _sockets)
        {
            socket.Dispose(); // the kernel leaves its groups
        }
    }

    /// <summary>Joins on a socket with room for another membership (each holds what net.core.optmem_max allows), else a new one.</summary>
    private Socket Join(Ip group)
    {
        foreach (var socket in _sockets)
        {
            try
            {
                Membership(socket, SocketOptionName.AddMembership, group);
                return socket;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.NoBufferSpaceAvailable)
            {
            }
        }

        var fresh = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            Membership(fresh, SocketOptionName.AddMembership, group);
        }
        catch
        {
            fresh.Dispose();
            throw;
        }

        _sockets.Add(fresh);
        return fresh;
    }

    private void Membership(Socket socket, SocketOptionName change, Ip group)
    {
        var bytes = new byte[16];
        BinaryPrimitives.WriteUInt128BigEndian(bytes, group.Value);
        socket.SetSocketOption(SocketOptionLevel.IPv6, change, new IPv6MulticastOption(new IPAddress(bytes), index));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot join {Group} on {Interface}: switches that snoop MLD may not forward Neighbor Solicitations for it to this node. Retried at every pass; logged once")]
    private partial void LogJoinFailed(Exception exception, string @interface, Ip group);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Change} {Group} on {Interface}")]
    private partial void LogMembership(string change, Ip group, string @interface);
}
