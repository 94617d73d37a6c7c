namespace LbAllocator.Core;

/// <summary>
/// When two Services may use one address: the same allow-shared-ip key, no (protocol, port) in common,
/// and backends that agree (both Cluster, or both Local with identical selectors, since with Local
/// only nodes running the pods may announce the address).
/// </summary>
public static class Sharing
{
    /// <summary>Why <paramref name="service"/> cannot share an address with <paramref name="user"/>, or null if it can.</summary>
    public static string? Conflict(ServiceInfo service, ServiceInfo user)
    {
        var key = service.SharingKey;
        var userKey = user.SharingKey;
        if (key is null)
        {
            return $"this Service has no {ServiceAnnotations.AllowSharedIp} annotation";
        }

        if (userKey is null)
        {
            return $"{user.Key} has no {ServiceAnnotations.AllowSharedIp} annotation";
        }

        if (key != userKey)
        {
            return $"the {ServiceAnnotations.AllowSharedIp} keys differ (\"{key}\" here, \"{userKey}\" on {user.Key})";
        }

        var overlap = service.Ports.FirstOrDefault(p => user.Ports.Any(u => u.Port == p.Port && Protocol(u) == Protocol(p)));
        if (overlap is not null)
        {
            return $"port {overlap.Port}/{Protocol(overlap)} overlaps";
        }

        if (service.TrafficPolicy != user.TrafficPolicy)
        {
            return $"externalTrafficPolicy differs ({service.TrafficPolicy} here, {user.TrafficPolicy} on {user.Key})";
        }

        if (service.TrafficPolicy == "Local" && !SameSelector(service.Selector, user.Selector))
        {
            return "both use externalTrafficPolicy Local but their pod selectors differ";
        }

        return null;
    }

    private static string Protocol(ServicePort port) => string.IsNullOrEmpty(port.Protocol) ? "TCP" : port.Protocol;

    private static bool SameSelector(IReadOnlyDictionary<string, string> a, IReadOnlyDictionary<string, string> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && v == kv.Value);
}
