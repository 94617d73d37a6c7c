using System.Reflection;
using System.Text;
using System.Text.Json;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;

namespace LbAllocator.Cli;

/// <summary>validate and plan: read manifests, run the real validator and allocator, print the outcome.</summary>
internal static class Commands
{
    public static int Validate(string[] paths, TextWriter stdout, TextWriter stderr) => Validate(Load(paths), stdout, stderr);

    /// <summary>Validate's work once the manifests are read; the fuzz tests call it without files.</summary>
    internal static int Validate(ManifestSet input, TextWriter stdout, TextWriter stderr)
    {
        var problems = new List<string>(input.Errors);
        problems.AddRange(Check(input).Problems);
        return Verdict(problems, $"{input.Pools.Count} IPAddressPool(s), {input.Advertisements.Count} L2Advertisement(s), {input.Namespaces.Count} Namespace(s), {input.Services.Count} Service(s)", stdout, stderr);
    }

    /// <summary>validate's ending: each problem on stdout, then "valid: SUMMARY" (exit 0) or "invalid: N problem(s) in SUMMARY" on stderr (exit 1).</summary>
    internal static int Verdict(IReadOnlyList<string> problems, string summary, TextWriter stdout, TextWriter stderr)
    {
        foreach (var problem in problems)
        {
            stdout.WriteLine(problem);
        }

        if (problems.Count > 0)
        {
            stderr.WriteLine($"invalid: {problems.Count} problem(s) in {summary}");
            return CliApp.Invalid;
        }

        stdout.WriteLine($"valid: {summary}");
        return CliApp.Ok;
    }

    /// <summary>
    /// import-metallb: MetalLB's configuration as ours on stdout, what is not carried over on stderr (one line each, with
    /// where it is). Input that cannot be converted prints nothing on stdout and exits 1, so a pipe into kubectl applies
    /// all or nothing.
    /// </summary>
    public static int ImportMetalLb(string[] paths, string ns, TextWriter stdout, TextWriter stderr)
    {
        var import = MetalLbImporter.Read(paths, ns);
        foreach (var line in import.NotCarriedOver)
        {
            stderr.WriteLine(line);
        }

        foreach (var error in import.Errors)
        {
            stderr.WriteLine(error);
        }

        var summary = $"{import.Pools.Count} IPAddressPool(s) and {import.Advertisements.Count} L2Advertisement(s); {import.NotCarriedOver.Count} thing(s) not carried over as written";
        if (import.Errors.Count > 0)
        {
            stderr.WriteLine($"not converted: {import.Errors.Count} error(s); {summary}");
            return CliApp.Invalid;
        }

        stdout.WriteLine($"# lballocator import-metallb {string.Join(' ', paths)}: {summary}");
        var objects = import.Pools.Select(p => JsonSerializer.SerializeToElement(p.Value, KubeJson.Default.V1Alpha1IPAddressPool))
            .Concat(import.Advertisements.Select(a => JsonSerializer.SerializeToElement(a.Value, KubeJson.Default.V1Alpha1L2Advertisement)));
        foreach (var value in objects)
        {
            stdout.WriteLine("---");
            YamlText.Write(stdout, value);
        }

        stderr.WriteLine($"converted: {summary}");
        return CliApp.Ok;
    }

    public static int Plan(string[] paths, bool json, TextWriter stdout, TextWriter stderr) => Plan(Load(paths), json, stdout, stderr);

    internal static int Plan(ManifestSet input, bool json, TextWriter stdout, TextWriter stderr)
    {
        if (input.Errors.Count > 0)
        {
            foreach (var error in input.Errors)
            {
                stderr.WriteLine(error);
            }

            return CliApp.Invalid;
        }

        var checkedInput = Check(input);
        foreach (var problem in checkedInput.Problems)
        {
            stderr.WriteLine($"warning: {problem}");
        }

        var allocator = new Allocator(new AllocatorOptions(), checkedInput.Config.Pools);
        var services = checkedInput.Services;
        var results = allocator.ReconcileAll(services);
        var rows = services.Zip(results)
            .Where(pair => pair.First.Type == "LoadBalancer")
            .Select(pair => new PlanRow(pair.Second.Namespace, pair.Second.Name, pair.Second.Ips, pair.Second.Pool, pair.Second switch
            {
                AllocationOutcome.NotOurs or AllocationOutcome.Released =>
                    $"spec.loadBalancerClass is \"{pair.First.LoadBalancerClass}\"; lballocator handles Services without a class",
                _ => pair.Second.Problem,
            }))
            .ToList();
        var pools = checkedInput.Config.Pools.OrderBy(p => p.Name, StringComparer.Ordinal).ToList();

        if (json)
        {
            WriteJson(stdout, rows, pools.Select(p => allocator.GetStats(p.Name)));
        }
        else
        {
            WriteTables(stdout, rows, pools, allocator);
        }

        return CliApp.Ok;
    }

    /// <summary>One Service of the plan as printed: its addresses and pool, or why it has none.</summary>
    private sealed record PlanRow(string Namespace, string Name, IReadOnlyList<Ip> Ips, string? Pool, string? Message);

    private sealed record CheckedInput(ValidatedConfig Config, List<ServiceInfo> Services, List<string> Problems);

    /// <summary>Validates the objects read, naming the file of each problem; returns the usable ones.</summary>
    private static CheckedInput Check(ManifestSet input)
    {
        var (config, configProblems) = ObjectMapper.Validate(input.Pools, input.Advertisements);
        var problems = configProblems.Select(p => $"{p.Position.File}: {p.Value}").ToList();

        var namespaceLabels = new Dictionary<string, IDictionary<string, string>>(StringComparer.Ordinal);
        foreach (var (position, ns) in input.Namespaces)
        {
            var name = ns.Metadata?.Name;
            if (!Names.IsDnsLabel(name))
            {
                problems.Add($"{position.File}: Namespace/{name}: metadata.name: \"{name}\" is not a valid namespace name");
                continue;
            }

            namespaceLabels[name!] = ns.Metadata!.Labels ?? new Dictionary<string, string>();
        }

        var services = new List<ServiceInfo>();
        var seen = new Dictionary<string, SourcePosition>(StringComparer.Ordinal);
        foreach (var (position, service) in input.Services)
        {
            var info = ObjectMapper.ToServiceInfo(service, NamespaceLabels(namespaceLabels, service));
            if (!Names.IsDnsLabel(info.Name))
            {
                problems.Add($"{position.File}: Service/{info.Key}: metadata.name: \"{info.Name}\" is not a valid Service name");
                continue;
            }

            if (!seen.TryAdd(info.Key, position))
            {
                problems.Add($"{position.File}: Service/{info.Key}: defined twice (first at {seen[info.Key]}); the second is ignored");
                continue;
            }

            if (info.Type == "LoadBalancer" && ServiceRequest.Parse(info, out var error) is null)
            {
                problems.Add($"{position.File}: Service/{info.Key}: {error}");
            }

            services.Add(info);
        }

        return new CheckedInput(config, services, problems);
    }

    /// <summary>A namespace's labels, with the name label the API server puts on every namespace.</summary>
    private static Dictionary<string, string> NamespaceLabels(Dictionary<string, IDictionary<string, string>> known, V1Service service)
    {
        var ns = string.IsNullOrEmpty(service.Metadata?.NamespaceProperty) ? "default" : service.Metadata.NamespaceProperty;
        var labels = known.TryGetValue(ns, out var found) ? new Dictionary<string, string>(found) : [];
        labels["kubernetes.io/metadata.name"] = ns;
        return labels;
    }

    private static ManifestSet Load(string[] paths)
    {
        if (paths.Length > 0)
        {
            return ManifestReader.ReadPaths(paths);
        }

        // No PATH: the samples bundled into this binary at build time.
        var set = new ManifestSet();
        var assembly = Assembly.GetExecutingAssembly();
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith("config/samples/", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            using var reader = new StreamReader(assembly.GetManifestResourceStream(name)!);
            ManifestReader.ReadText(name, reader.ReadToEnd(), set);
        }

        return set;
    }

    private static void WriteTables(TextWriter stdout, List<PlanRow> rows, List<Pool> pools, Allocator allocator)
    {
        WriteTable(stdout, ["NAMESPACE", "NAME", "TYPE", "EXTERNAL-IP", "POOL", "MESSAGE"], rows.Select(r => new[]
        {
            r.Namespace,
            r.Name,
            "LoadBalancer",
            r.Ips.Count > 0 ? string.Join(",", r.Ips) : "<pending>",
            r.Pool ?? "<none>",
            r.Message ?? "",
        }));
        stdout.WriteLine();
        WriteTable(stdout, ["POOL", "AUTO ASSIGN", "ADDRESSES", "IPv4 ASSIGNED", "IPv4 AVAILABLE", "IPv6 ASSIGNED", "IPv6 AVAILABLE"], pools.Select(p =>
        {
            var stats = allocator.GetStats(p.Name);
            return new[]
            {
                p.Name,
                p.AutoAssign ? "true" : "false",
                string.Join(",", p.Ranges),
                stats.AssignedIPv4.ToString(),
                stats.AvailableIPv4.ToString(),
                stats.AssignedIPv6.ToString(),
                stats.AvailableIPv6.ToString(),
            };
        }));
    }

    internal static void WriteTable(TextWriter stdout, string[] headers, IEnumerable<string[]> rows)
    {
        var all = rows.Prepend(headers).ToList();
        var widths = headers.Select((_, i) => all.Max(r => r[i].Length)).ToArray();
        foreach (var row in all)
        {
            var line = new StringBuilder();
            for (var i = 0; i < row.Length; i++)
            {
                line.Append(i == row.Length - 1 ? row[i] : row[i].PadRight(widths[i] + 3));
            }

            stdout.WriteLine(line.ToString().TrimEnd());
        }
    }

    private static void WriteJson(TextWriter stdout, List<PlanRow> rows, IEnumerable<PoolStats> pools) => WriteJsonObject(stdout, json =>
    {
        json.WriteStartArray("services");
        foreach (var row in rows)
        {
            json.WriteStartObject();
            json.WriteString("namespace", row.Namespace);
            json.WriteString("name", row.Name);
            WriteIps(json, "ips", row.Ips);
            json.WriteString("pool", row.Pool);
            json.WriteString("error", row.Message);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteStartArray("pools");
        foreach (var stats in pools)
        {
            json.WriteStartObject();
            json.WriteString("name", stats.Name);
            // Counts can exceed 64 bits (an IPv6 /64 holds 2^64 addresses): written as exact JSON numbers.
            json.WritePropertyName("assignedIPv4");
            json.WriteRawValue(stats.AssignedIPv4.ToString());
            json.WritePropertyName("availableIPv4");
            json.WriteRawValue(stats.AvailableIPv4.ToString());
            json.WritePropertyName("assignedIPv6");
            json.WriteRawValue(stats.AssignedIPv6.ToString());
            json.WritePropertyName("availableIPv6");
            json.WriteRawValue(stats.AvailableIPv6.ToString());
            json.WriteEndObject();
        }

        json.WriteEndArray();
    });

    /// <summary>One JSON object on a line of stdout, its members written by <paramref name="members"/>.</summary>
    internal static void WriteJsonObject(TextWriter stdout, Action<Utf8JsonWriter> members)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            members(json);
            json.WriteEndObject();
        }

        stdout.WriteLine(Encoding.UTF8.GetString(buffer.ToArray()));
    }

    internal static void WriteIps(Utf8JsonWriter json, string name, IEnumerable<Ip> ips)
    {
        json.WriteStartArray(name);
        foreach (var ip in ips)
        {
            json.WriteStringValue(ip.ToString());
        }

        json.WriteEndArray();
    }
}
