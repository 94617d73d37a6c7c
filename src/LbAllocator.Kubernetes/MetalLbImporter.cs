using System.Globalization;
using System.Text.RegularExpressions;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace LbAllocator.Kubernetes;

/// <summary>What <see cref="MetalLbImporter"/> made of MetalLB's configuration.</summary>
public sealed class MetalLbImport
{
    public List<Located<V1Alpha1IPAddressPool>> Pools { get; } = [];
    public List<Located<V1Alpha1L2Advertisement>> Advertisements { get; } = [];

    /// <summary>
    /// "FILE:LINE:COLUMN: message": what MetalLB had that lballocator does not carry over as written (BGP, unknown fields,
    /// a CIDR with host bits written as its network).
    /// </summary>
    public List<string> NotCarriedOver { get; } = [];

    /// <summary>"FILE:LINE:COLUMN: message": input that cannot be converted at all.</summary>
    public List<string> Errors { get; } = [];
}

/// <summary>
/// Reads MetalLB's configuration (metallb.io/v1beta1 IPAddressPool and L2Advertisement, and the ConfigMap of
/// MetalLB 0.12 and before, whose data.config lists address-pools) and makes ours of it, with the same names.
/// The shapes are MetalLB's own, so the fields carry over one to one; where a meaning differs the behaviour is kept,
/// not the number: MetalLB's serviceAllocation.priority 0 means no priority, which is ours left unset. BGP is reported,
/// not converted. The result is checked by the same validator the controller uses.
/// </summary>
public static partial class MetalLbImporter
{
    private const string Group = "metallb.io";
    private const string Bgp = "BGP is not supported: lballocator announces by ARP and NDP only";

    /// <summary>The kinds of MetalLB's configuration by version: null for the two converted, else why it is not carried over.</summary>
    private static readonly Dictionary<string, string?> Kinds = new(StringComparer.Ordinal)
    {
        ["v1beta1/IPAddressPool"] = null,
        ["v1beta1/L2Advertisement"] = null,
        ["v1beta1/BGPAdvertisement"] = Bgp,
        ["v1beta1/BGPPeer"] = Bgp,
        ["v1beta2/BGPPeer"] = Bgp,
        ["v1beta1/BFDProfile"] = Bgp + " (nor BFD)",
        ["v1beta1/Community"] = Bgp,
        ["v1beta1/ServiceL2Status"] = "MetalLB's own status, not configuration; lballocator writes its own",
        ["v1beta1/ServiceBGPStatus"] = "MetalLB's own status, not configuration",
    };

    private static readonly string[] PoolFields = ["addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation"];
    private static readonly string[] AllocationFields = ["priority", "namespaces", "namespaceSelectors", "serviceSelectors"];
    private static readonly string[] AdvertisementFields = ["ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "interfaces"];

    /// <summary>Reads every path (files, directories recursively) into our objects for namespace <paramref name="ns"/>.</summary>
    public static MetalLbImport Read(IEnumerable<string> paths, string ns)
    {
        var import = new MetalLbImport();
        ManifestReader.ReadDocuments(paths, new ManifestReader.Reading(import.Errors, (file, text, root) => ReadObject(root, m => new SourcePosition(file, m), text, ns, import)));
        if (import.Errors.Count == 0)
        {
            Check(import);
        }

        return import;
    }

    private static void ReadObject(YamlNode node, Func<Mark, SourcePosition> at, string text, string ns, MetalLbImport into)
    {
        if (node is not YamlMappingNode map)
        {
            into.Errors.Add($"{at(node.Start)}: expected a Kubernetes object (a mapping with apiVersion and kind)");
            return;
        }

        var apiVersion = ManifestReader.Scalar(map, "apiVersion") ?? "";
        var kind = ManifestReader.Scalar(map, "kind") ?? "";
        var name = Child(map, "metadata") is YamlMappingNode metadata ? ManifestReader.Scalar(metadata, "name") : null;
        var what = $"{kind}/{name}";
        switch (apiVersion.Split('/'))
        {
            case ["v1"] when kind == "ConfigMap":
                ReadConfigMap(map, at, text, what, ns, into);
                return;
            case [Group, var version] when Kinds.TryGetValue($"{version}/{kind}", out var unsupported):
                if (unsupported is not null)
                {
                    into.NotCarriedOver.Add($"{at(map.Start)}: {what}: not carried over: {unsupported}");
                }
                else if (kind == "IPAddressPool")
                {
                    Add(into.Pools, kind, map, map.Start, at, what, ns, PoolSpec(Child(map, "spec"), at, what, into), into);
                }
                else
                {
                    Add(into.Advertisements, kind, map, map.Start, at, what, ns, AdvertisementSpec(Child(map, "spec"), at, what, into), into);
                }

                return;
            case [Group, _]:
                into.Errors.Add($"{at(map.Start)}: unknown kind \"{kind}\" in \"{apiVersion}\": expected {Group}/v1beta1 IPAddressPool or L2Advertisement (BGP kinds are reported), or a v1 ConfigMap of MetalLB 0.12 or before");
                return;
            default:
                into.NotCarriedOver.Add($"{at(map.Start)}: {what} (\"{apiVersion}\"): skipped: not MetalLB's configuration");
                return;
        }
    }

    /// <summary>An IPAddressPool's spec, MetalLB's fields under our names (the same), priority 0 left out.</summary>
    private static YamlMappingNode? PoolSpec(YamlNode? spec, Func<Mark, SourcePosition> at, string what, MetalLbImport into)
    {
        if (spec is not YamlMappingNode map)
        {
            return spec is null ? null : Wrong(spec, "spec", at, what, into);
        }

        var kept = Known(map, PoolFields, "spec", at, what, into);
        if (Child(kept, "addresses") is { } addresses)
        {
            kept.Children[new YamlScalarNode("addresses")] = Networks(addresses, at, what, into);
        }

        if (Child(kept, "serviceAllocation") is YamlMappingNode allocation)
        {
            var keptAllocation = Known(allocation, AllocationFields, "spec.serviceAllocation", at, what, into);
            // MetalLB: 0 is no priority, and such pools come after those with one. Ours: unset does that.
            if (Child(keptAllocation, "priority") is YamlScalarNode { Value: "0" or "+0" or "-0" })
            {
                keptAllocation.Children.Remove(new YamlScalarNode("priority"));
            }

            kept.Children[new YamlScalarNode("serviceAllocation")] = keptAllocation;
        }

        return kept;
    }

    private static YamlMappingNode? AdvertisementSpec(YamlNode? spec, Func<Mark, SourcePosition> at, string what, MetalLbImport into) =>
        spec switch
        {
            YamlMappingNode map => Known(map, AdvertisementFields, "spec", at, what, into),
            null => null,
            _ => Wrong(spec, "spec", at, what, into),
        };

    /// <summary>
    /// MetalLB 0.12 and before: a ConfigMap whose data.config is YAML listing address-pools (layer2 or bgp). Each pool
    /// becomes an IPAddressPool and, for layer2, an L2Advertisement of the same name covering it.
    /// </summary>
    private static void ReadConfigMap(YamlMappingNode map, Func<Mark, SourcePosition> at, string text, string what, string ns, MetalLbImport into)
    {
        if (Child(map, "data") is not YamlMappingNode data || Child(data, "config") is not YamlScalarNode config)
        {
            into.Errors.Add($"{at(map.Start)}: {what}: no data.config: not MetalLB's configuration (MetalLB 0.12 and before keep their address-pools there)");
            return;
        }

        var inner = Inside(config, at, text);
        var errors = new List<string>();
        var documents = new List<YamlNode>();
        ManifestReader.ReadText(InnerFile, config.Value ?? "", new ManifestReader.Reading(errors, (_, _, root) => documents.Add(root)));
        foreach (var error in errors)
        {
            // The reader names the inner text's line and column; point into the file instead.
            var match = InnerPosition().Match(error);
            into.Errors.Add(match.Success
                ? $"{inner(new Mark(0, long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture), long.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture)))}: {what}: data.config: {match.Groups[3].Value}"
                : $"{at(config.Start)}: {what}: data.config: {error}");
        }

        if (errors.Count > 0)
        {
            return;
        }

        if (documents is not [YamlMappingNode root])
        {
            into.Errors.Add($"{at(config.Start)}: {what}: data.config: expected one mapping with address-pools");
            return;
        }

        foreach (var (key, value) in root.Children)
        {
            switch ((key as YamlScalarNode)?.Value)
            {
                case "address-pools" when value is YamlSequenceNode pools:
                    foreach (var (index, pool) in pools.Children.Index())
                    {
                        ReadLegacyPool(pool, $"{what}: data.config: address-pools[{index}]", inner, ns, into);
                    }

                    break;
                case "address-pools":
                    Wrong(value, "address-pools", inner, $"{what}: data.config", into);
                    break;
                case "peers" or "bgp-communities" or "bfd-profiles":
                    into.NotCarriedOver.Add($"{inner(key.Start)}: {what}: data.config: {key}: not carried over: {Bgp}");
                    break;
                default:
                    into.NotCarriedOver.Add($"{inner(key.Start)}: {what}: data.config: {key}: not carried over: lballocator has no such setting");
                    break;
            }
        }
    }

    private static void ReadLegacyPool(YamlNode node, string what, Func<Mark, SourcePosition> at, string ns, MetalLbImport into)
    {
        if (node is not YamlMappingNode pool)
        {
            into.Errors.Add($"{at(node.Start)}: {what}: expected a mapping with name, protocol and addresses");
            return;
        }

        var name = ManifestReader.Scalar(pool, "name");
        var protocol = ManifestReader.Scalar(pool, "protocol");
        var spec = new YamlMappingNode();
        foreach (var (key, value) in pool.Children)
        {
            switch ((key as YamlScalarNode)?.Value)
            {
                case "name" or "protocol":
                    break;
                case "addresses":
                    spec.Add("addresses", Networks(value, at, what, into));
                    break;
                case "auto-assign":
                    spec.Add("autoAssign", value);
                    break;
                case "avoid-buggy-ips":
                    spec.Add("avoidBuggyIPs", value);
                    break;
                case "bgp-advertisements":
                    into.NotCarriedOver.Add($"{at(key.Start)}: {what}: bgp-advertisements: not carried over: {Bgp}");
                    break;
                default:
                    into.NotCarriedOver.Add($"{at(key.Start)}: {what}: {key}: not carried over: lballocator has no such field");
                    break;
            }
        }

        if (string.IsNullOrEmpty(name))
        {
            into.Errors.Add($"{at(pool.Start)}: {what}: name: missing");
            return;
        }

        var metadata = new YamlMappingNode { { "name", new YamlScalarNode(name) } };
        var objectWhat = $"{what} (\"{name}\")";
        var source = new YamlMappingNode { { "metadata", metadata } };
        Add(into.Pools, "IPAddressPool", source, pool.Start, at, objectWhat, ns, spec, into);
        switch (protocol)
        {
            case "layer2":
                var advertisement = new YamlMappingNode { { "ipAddressPools", new YamlSequenceNode(new YamlScalarNode(name)) } };
                Add(into.Advertisements, "L2Advertisement", source, pool.Start, at, objectWhat, ns, advertisement, into);
                break;
            case "bgp":
                into.NotCarriedOver.Add(
                    $"{at(pool.Start)}: {objectWhat}: protocol bgp: not carried over: {Bgp}. The pool is converted, so its Services keep their "
                    + "addresses, but without an L2Advertisement: nothing announces them until one covers the pool");
                break;
            default:
                into.Errors.Add($"{at(pool.Start)}: {objectWhat}: protocol: \"{protocol}\" is not layer2 or bgp");
                break;
        }
    }

    /// <summary>Our object of <paramref name="kind"/> added to <paramref name="list"/>, or why it cannot be made to <see cref="MetalLbImport.Errors"/>.</summary>
    private static void Add<T>(List<Located<T>> list, string kind, YamlMappingNode source, Mark position, Func<Mark, SourcePosition> at, string what, string ns, YamlMappingNode? spec, MetalLbImport into)
        where T : class
    {
        if (Convert<T>(source, at(position), at, what, ns, kind, spec, into) is { } converted)
        {
            list.Add(new(at(position), converted));
        }
    }

    /// <summary>Our object: the name and labels of <paramref name="source"/>'s metadata (pool selectors read labels), in our namespace.</summary>
    private static T? Convert<T>(YamlMappingNode source, SourcePosition position, Func<Mark, SourcePosition> at, string what, string ns, string kind, YamlMappingNode? spec, MetalLbImport into)
        where T : class
    {
        var metadata = new YamlMappingNode { { "namespace", ns } };
        if (Child(source, "metadata") is YamlMappingNode original)
        {
            foreach (var field in new[] { "name", "labels" })
            {
                if (Child(original, field) is { } value)
                {
                    metadata.Add(field, value);
                }
            }
        }

        var ours = new YamlMappingNode { { "apiVersion", Api.GroupVersion }, { "kind", kind }, { "metadata", metadata } };
        if (spec is not null)
        {
            ours.Add("spec", spec);
        }

        try
        {
            return (T)TypedYaml.Deserialize(ours, typeof(T), KubeJson.Default.Options, strict: true);
        }
        catch (TypedYamlException e)
        {
            into.Errors.Add($"{at(e.At)}: {what}: {e.Message}");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            into.Errors.Add($"{position}: {what}: {ManifestReader.Message(e)}");
        }

        return null;
    }

    /// <summary>The converted objects as the controller would take them: what it would refuse is an error here.</summary>
    private static void Check(MetalLbImport import) =>
        import.Errors.AddRange(ObjectMapper.Validate(import.Pools, import.Advertisements).Problems.Select(p => $"{p.Position}: {p.Value}"));

    /// <summary>
    /// The addresses with each CIDR that has host bits set written as its network, which is what MetalLB serves
    /// (ours refuses it as ambiguous); each one so rewritten is reported.
    /// </summary>
    private static YamlNode Networks(YamlNode addresses, Func<Mark, SourcePosition> at, string what, MetalLbImport into)
    {
        if (addresses is not YamlSequenceNode list)
        {
            return addresses; // the typed reading reports what is wrong with it
        }

        var result = new YamlSequenceNode();
        foreach (var item in list)
        {
            if (item is YamlScalarNode { Value: var text } && IpRange.NetworkOf(text) is { } network)
            {
                into.NotCarriedOver.Add($"{at(item.Start)}: {what}: \"{text}\" is written as {network}: MetalLB takes a CIDR's network, lballocator asks for it as written");
                result.Add(new YamlScalarNode(network));
            }
            else
            {
                result.Add(item);
            }
        }

        return result;
    }

    /// <summary>A copy of <paramref name="map"/> with the fields lballocator has; each other one reported.</summary>
    private static YamlMappingNode Known(YamlMappingNode map, string[] fields, string path, Func<Mark, SourcePosition> at, string what, MetalLbImport into)
    {
        var kept = new YamlMappingNode();
        foreach (var (key, value) in map.Children)
        {
            if (key is YamlScalarNode { Value: { } name } && fields.Contains(name, StringComparer.Ordinal))
            {
                kept.Add(key, value);
            }
            else
            {
                into.NotCarriedOver.Add($"{at(key.Start)}: {what}: {path}.{key}: not carried over: lballocator has no such field");
            }
        }

        return kept;
    }

    private static YamlMappingNode? Wrong(YamlNode node, string path, Func<Mark, SourcePosition> at, string what, MetalLbImport into)
    {
        into.Errors.Add($"{at(node.Start)}: {what}: {path}: expected a mapping");
        return null;
    }

    private static YamlNode? Child(YamlMappingNode map, string key) =>
        map.Children.TryGetValue(new YamlScalarNode(key), out var value) && !TypedYaml.IsNull(value) ? value : null;

    /// <summary>
    /// Positions inside data.config, in the file. A literal block (`config: |`, as MetalLB's documentation writes it)
    /// keeps lines and columns, shifted by where it starts and by its indentation; any other style joins or escapes
    /// lines, so a position inside it is the scalar's own.
    /// </summary>
    private static Func<Mark, SourcePosition> Inside(YamlScalarNode config, Func<Mark, SourcePosition> at, string text)
    {
        var block = at(config.Start);
        if (config.Style != ScalarStyle.Literal)
        {
            return _ => block;
        }

        // The block's indentation is that of its first line that is not empty; its content starts on the next line.
        var lines = text.Split('\n');
        var indent = lines.Skip((int)config.Start.Line).FirstOrDefault(l => l.Trim().Length > 0) is { } first ? first.Length - first.TrimStart(' ').Length : 0;
        return m => new SourcePosition(block.File, config.Start.Line + m.Line, m.Column + indent);
    }

    private const string InnerFile = "data.config";

    [GeneratedRegex(@"^data\.config:(\d+):(\d+): (.*)$", RegexOptions.Singleline)]
    private static partial Regex InnerPosition();
}
