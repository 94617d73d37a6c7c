namespace LbAllocator.Core;

/// <summary>
/// MetalLB's Service annotations read as ours (`--accept-metallb-annotations`), so Services written for MetalLB keep
/// asking for what they asked for. Per annotation: ours wins, then metallb.io/, then the older metallb.universe.tf/
/// (MetalLB's own order).
/// </summary>
public static class MetalLbAnnotations
{
    private static readonly string[] Prefixes = ["metallb.io/", "metallb.universe.tf/"];

    /// <summary>Our annotations that have a MetalLB form under the same name after the prefix.</summary>
    private static readonly string[] Ours = [ServiceAnnotations.LoadBalancerIPs, ServiceAnnotations.AddressPool, ServiceAnnotations.AllowSharedIp];

    /// <summary>The Service with each MetalLB annotation it has (and has not ours of) copied to ours; unchanged if none.</summary>
    public static ServiceInfo Adopt(ServiceInfo service)
    {
        Dictionary<string, string>? annotations = null;
        Dictionary<string, string>? adoptedFrom = null;
        foreach (var ours in Ours)
        {
            if (service.Annotations.ContainsKey(ours))
            {
                continue;
            }

            var name = ours[(ours.IndexOf('/', StringComparison.Ordinal) + 1)..];
            foreach (var key in Prefixes.Select(prefix => prefix + name))
            {
                if (service.Annotations.TryGetValue(key, out var value))
                {
                    annotations ??= new Dictionary<string, string>(service.Annotations, StringComparer.Ordinal);
                    adoptedFrom ??= new Dictionary<string, string>(StringComparer.Ordinal);
                    annotations[ours] = value;
                    adoptedFrom[ours] = key;
                    break;
                }
            }
        }

        return annotations is null ? service : service with { Annotations = annotations, AdoptedFrom = adoptedFrom! };
    }
}
