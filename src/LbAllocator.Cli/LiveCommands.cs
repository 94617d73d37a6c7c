using LbAllocator.Core;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;

namespace LbAllocator.Cli;

/// <summary>
/// plan and validate against a live cluster: proposed pools weighed against the pools and Services that are there.
/// Read-only: only lists are sent. A proposed pool replaces the live one of the same name; the others stay.
/// </summary>
internal static class LiveCommands
{
    /// <summary>What the cluster holds, as the controller would read it.</summary>
    private sealed record Live(List<PoolSpec> Pools, List<ServiceInfo> Services);

    /// <summary>
    /// plan --pools: every Service holding an address that would be renumbered or left pending under the proposed pools,
    /// and those that would get one; exit 1 when any Service would lose or change its address.
    /// </summary>
    public static async Task<int> PlanAsync(string? kubeconfig, string poolsFile, string ns, bool acceptMetalLb, bool json, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        if (Proposed(poolsFile, stderr) is not { } proposed)
        {
            return CliApp.Invalid;
        }

        if (await ReadLiveAsync(kubeconfig, ns, stderr, cancellationToken) is not { } live)
        {
            return CliApp.Invalid;
        }

        var config = ConfigValidator.Validate(Replace(live.Pools, proposed.Pools.Select(p => ObjectMapper.ToPoolSpec(p.Value))), []);
        var proposedAt = proposed.Pools.GroupBy(p => p.Value.Metadata?.Name ?? "", StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First().Position, StringComparer.Ordinal);
        var invalid = config.Problems.Where(p => proposedAt.ContainsKey(p.Name)).ToList();
        if (invalid.Count > 0)
        {
            foreach (var problem in invalid)
            {
                stderr.WriteLine($"{proposedAt[problem.Name]}: {problem}");
            }

            stderr.WriteLine($"not planned: {invalid.Count} problem(s) in the proposed pools (lballocator validate --kubeconfig shows them against the live pools)");
            return CliApp.Invalid;
        }

        var services = acceptMetalLb ? [.. live.Services.Select(MetalLbAnnotations.Adopt)] : live.Services;
        var outcomes = new Allocator(new AllocatorOptions(), config.Pools).ReconcileAll(services);
        var changes = new List<Change>();
        foreach (var (service, outcome) in services.Zip(outcomes))
        {
            var now = service.IngressAddresses;
            if (service.IsLoadBalancerFor(null) && !now.Order().SequenceEqual(outcome.Ips.Order()))
            {
                changes.Add(new Change(service, now, outcome, (now.Count, outcome.Ips.Count) switch
                {
                    (> 0, 0) => "pending",
                    (0, _) => "assigned",
                    _ => "renumbered",
                }));
            }
        }

        var count = changes.CountBy(c => c.Kind).ToDictionary();
        var disrupted = count.GetValueOrDefault("renumbered") + count.GetValueOrDefault("pending");
        if (json)
        {
            WriteJson(stdout, changes);
        }
        else if (changes.Count > 0)
        {
            Commands.WriteTable(stdout, ["NAMESPACE", "NAME", "NOW", "AFTER", "POOL", "CHANGE", "MESSAGE"], changes.Select(c => new[]
            {
                c.Service.Namespace, c.Service.Name, Addresses(c.Now), Addresses(c.After.Ips), c.After.Pool ?? "<none>", c.Kind, c.After.Problem ?? "",
            }));
        }

        var summary = $"{count.GetValueOrDefault("renumbered")} renumbered, {count.GetValueOrDefault("pending")} left pending, {count.GetValueOrDefault("assigned")} newly assigned, "
            + $"of {services.Count(s => s.IsLoadBalancerFor(null))} LoadBalancer Service(s)";
        // With -o json stdout is the document alone.
        (disrupted > 0 || json ? stderr : stdout).WriteLine($"{(disrupted > 0 ? "changes addresses" : "keeps every address")}: {summary}");
        return disrupted > 0 ? CliApp.Invalid : CliApp.Ok;
    }

    /// <summary>A Service whose addresses the proposed pools would change: what it holds now, the allocator's outcome, and which change.</summary>
    private sealed record Change(ServiceInfo Service, IReadOnlyList<Ip> Now, AllocationOutcome After, string Kind);

    private static void WriteJson(TextWriter stdout, List<Change> changes) => Commands.WriteJsonObject(stdout, json =>
    {
        json.WriteStartArray("changes");
        foreach (var change in changes)
        {
            json.WriteStartObject();
            json.WriteString("namespace", change.Service.Namespace);
            json.WriteString("name", change.Service.Name);
            Commands.WriteIps(json, "now", change.Now);
            Commands.WriteIps(json, "after", change.After.Ips);
            json.WriteString("pool", change.After.Pool);
            json.WriteString("change", change.Kind);
            json.WriteString("message", change.After.Problem);
            json.WriteEndObject();
        }

        json.WriteEndArray();
    });

    /// <summary>validate --kubeconfig: the file's pools and advertisements checked together with the live pools they do not replace.</summary>
    public static async Task<int> ValidateAsync(string? kubeconfig, string[] paths, string ns, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        var input = ManifestReader.ReadPaths(paths);
        if (input.Errors.Count > 0)
        {
            return Commands.Verdict(input.Errors, string.Join(' ', paths), stdout, stderr);
        }

        if (await ReadLiveAsync(kubeconfig, ns, stderr, cancellationToken) is not { } live)
        {
            return CliApp.Invalid;
        }

        var proposedPools = input.Pools.Select(p => ObjectMapper.ToPoolSpec(p.Value)).ToList();
        var kept = live.Pools.Count(p => !proposedPools.Any(q => q.Name == p.Name));
        var config = ConfigValidator.Validate(
            Replace(live.Pools, proposedPools),
            [.. input.Advertisements.Select(a => ObjectMapper.ToAdvertisementSpec(a.Value))]);
        var problems = new List<string>();
        foreach (var problem in config.Problems)
        {
            if (problem.Kind == ConfigValidator.AdvertisementKind)
            {
                problems.Add($"{input.Advertisements[problem.Index].Position}: {problem}");
            }
            else if (proposedPools.FindIndex(p => p.Name == problem.Name) is var index and >= 0)
            {
                problems.Add($"{input.Pools[index].Position}: {problem}");
            }
        }

        return Commands.Verdict(
            problems,
            $"{input.Pools.Count} IPAddressPool(s), {input.Advertisements.Count} L2Advertisement(s) against {kept} live pool(s) they do not replace in namespace {ns}",
            stdout,
            stderr);
    }

    private static ManifestSet? Proposed(string file, TextWriter stderr)
    {
        var proposed = ManifestReader.ReadPaths([file]);
        foreach (var error in proposed.Errors)
        {
            stderr.WriteLine(error);
        }

        if (proposed.Errors.Count > 0)
        {
            return null;
        }

        if (proposed.Services.Count + proposed.Namespaces.Count > 0)
        {
            stderr.WriteLine($"warning: {file}: Services and Namespaces in it are ignored: the plan takes them from the cluster");
        }

        return proposed;
    }

    /// <summary>The live pools (oldest first, as the controller orders them), with each proposed one in its place or, if new, last.</summary>
    private static List<PoolSpec> Replace(List<PoolSpec> live, IEnumerable<PoolSpec> proposed)
    {
        var result = new List<PoolSpec>(live);
        foreach (var pool in proposed)
        {
            var at = result.FindIndex(p => p.Name == pool.Name);
            if (at >= 0)
            {
                result[at] = pool;
            }
            else
            {
                result.Add(pool);
            }
        }

        return result;
    }

    private static async Task<Live?> ReadLiveAsync(string? kubeconfig, string ns, TextWriter stderr, CancellationToken cancellationToken)
    {
        try
        {
            using var api = new KubeApi(KubeClientConfiguration.Load(kubeconfig));
            var pools = await api.ListAsync(KubeResources.Pools, ns, cancellationToken: cancellationToken);
            var namespaces = await api.ListAsync(KubeResources.Namespaces, null, cancellationToken: cancellationToken);
            var services = await api.ListAsync(KubeResources.Services, null, cancellationToken: cancellationToken);
            var labels = (namespaces.Items ?? []).ToDictionary(n => n.Metadata.Name, n => n.Metadata.Labels ?? new Dictionary<string, string>(), StringComparer.Ordinal);
            return new Live(
                ObjectMapper.ToPoolSpecs(pools.Items ?? []),
                [.. (services.Items ?? []).Select(s => ObjectMapper.ToServiceInfo(s, labels.GetValueOrDefault(s.Metadata.NamespaceProperty)))]);
        }
        catch (Exception e) when (e is KubeConfigException or KubeApiException or HttpRequestException or IOException or TaskCanceledException)
        {
            stderr.WriteLine($"cannot read the cluster: {e.Message}");
            return null;
        }
    }

    private static string Addresses(IReadOnlyList<Ip> ips) => ips.Count > 0 ? string.Join(",", ips) : "<pending>";
}
