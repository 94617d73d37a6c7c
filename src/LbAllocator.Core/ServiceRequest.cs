namespace LbAllocator.Core;

public enum FamilyPolicy
{
    SingleStack,
    PreferDualStack,
    RequireDualStack,
}

/// <summary>What a Service asks for, parsed and checked: its families, requested addresses and pool.</summary>
public sealed record ServiceRequest(
    FamilyPolicy Policy,
    IReadOnlyList<IpFamily> Families,
    IReadOnlyList<Ip> RequestedIps,
    string? PoolName)
{
    public IpFamily Primary => Families[0];

    /// <summary>The families to allocate: one for single stack, both (primary first) otherwise.</summary>
    public IReadOnlyList<IpFamily> Wanted => Policy == FamilyPolicy.SingleStack ? [Primary] : Families;

    public bool Wants(IpFamily family) => family == Primary || (Policy != FamilyPolicy.SingleStack && Families.Contains(family));

    /// <summary>Parses the Service's fields and annotations; returns null and a reason a person can act on when they are invalid.</summary>
    public static ServiceRequest? Parse(ServiceInfo service, out string? error)
    {
        var problems = new List<string>();

        var policy = FamilyPolicy.SingleStack;
        if (!string.IsNullOrEmpty(service.IpFamilyPolicy) && !Enum.TryParse(service.IpFamilyPolicy, ignoreCase: false, out policy))
        {
            problems.Add($"spec.ipFamilyPolicy \"{service.IpFamilyPolicy}\" is not one of SingleStack, PreferDualStack, RequireDualStack");
        }

        // A Service read from a file may omit ipFamilies; a live cluster always fills it in.
        var families = new List<IpFamily>();
        foreach (var name in service.IpFamilies.Count == 0 ? ["IPv4"] : service.IpFamilies)
        {
            if (name is not ("IPv4" or "IPv6"))
            {
                problems.Add($"spec.ipFamilies: \"{name}\" is not IPv4 or IPv6");
            }
            else if (families.Contains(name == "IPv4" ? IpFamily.IPv4 : IpFamily.IPv6))
            {
                problems.Add($"spec.ipFamilies: {name} is listed twice");
            }
            else
            {
                families.Add(name == "IPv4" ? IpFamily.IPv4 : IpFamily.IPv6);
            }
        }

        if (families.Count == 2 && policy == FamilyPolicy.SingleStack)
        {
            problems.Add("spec.ipFamilies lists two families but spec.ipFamilyPolicy is SingleStack");
        }

        // The API server lists both families for RequireDualStack; for PreferDualStack it lists one
        // only on a single-stack cluster, where one address is all the Service can use.
        if (families.Count == 1 && policy == FamilyPolicy.RequireDualStack)
        {
            families.Add(families[0] == IpFamily.IPv4 ? IpFamily.IPv6 : IpFamily.IPv4);
        }

        var requested = ParseRequestedIps(service, problems);
        if (problems.Count == 0 && requested.Count > 0)
        {
            var wanted = policy == FamilyPolicy.SingleStack ? families.Take(1) : families;
            foreach (var ip in requested.Where(ip => !wanted.Contains(ip.Family)))
            {
                problems.Add($"requested IP {ip} is {Ip.FamilyName(ip.Family)} but the Service is {Ip.FamilyName(families[0])} single-stack");
            }

            if (policy == FamilyPolicy.RequireDualStack && requested.Count == 1)
            {
                problems.Add($"the Service requires dual stack, so {service.AnnotationName(ServiceAnnotations.LoadBalancerIPs)} must list one IPv4 and one IPv6 address");
            }
        }

        string? pool = null;
        if (service.Annotations.TryGetValue(ServiceAnnotations.AddressPool, out var poolName))
        {
            pool = poolName.Trim();
            if (pool.Length == 0)
            {
                problems.Add($"annotation {service.AnnotationName(ServiceAnnotations.AddressPool)} is empty; name an IPAddressPool or remove it");
            }
        }

        if (problems.Count > 0)
        {
            error = string.Join("; ", problems);
            return null;
        }

        error = null;
        return new ServiceRequest(policy, families, requested, pool);
    }

    private static List<Ip> ParseRequestedIps(ServiceInfo service, List<string> problems)
    {
        var ips = new List<Ip>();
        var hasAnnotation = service.Annotations.TryGetValue(ServiceAnnotations.LoadBalancerIPs, out var annotation);
        var name = service.AnnotationName(ServiceAnnotations.LoadBalancerIPs);
        var hasSpec = !string.IsNullOrWhiteSpace(service.LoadBalancerIP);
        if (hasAnnotation && hasSpec)
        {
            problems.Add($"both annotation {name} and spec.loadBalancerIP are set; keep only the annotation");
            return ips;
        }

        if (hasSpec)
        {
            if (Ip.TryParse(service.LoadBalancerIP, out var ip, out var error))
            {
                ips.Add(ip);
            }
            else
            {
                problems.Add($"spec.loadBalancerIP: {error}");
            }

            return ips;
        }

        if (!hasAnnotation)
        {
            return ips;
        }

        var items = annotation!.Split(',', StringSplitOptions.TrimEntries);
        if (items.Any(i => i.Length == 0))
        {
            problems.Add($"annotation {name} \"{annotation}\" has an empty entry; list addresses separated by commas");
            return ips;
        }

        foreach (var item in items)
        {
            if (!Ip.TryParse(item, out var ip, out var error))
            {
                problems.Add($"annotation {name}: {error}");
            }
            else if (ips.Any(other => other.Family == ip.Family))
            {
                problems.Add($"annotation {name} lists more than one {Ip.FamilyName(ip.Family)} address; give at most one per family");
            }
            else
            {
                ips.Add(ip);
            }
        }

        return ips;
    }
}
