namespace LbAllocator.Kubernetes.Tests;

public class ManifestReaderTests
{
    private static ManifestSet Read(string content)
    {
        var set = new ManifestSet();
        ManifestReader.ReadText("in.yaml", content, set);
        return set;
    }

    [Fact]
    public void Objects_keep_their_order_and_position()
    {
        var set = Read("""
            apiVersion: v1
            kind: Namespace
            metadata: {name: a}
            ---
            # a comment
            apiVersion: v1
            kind: Service
            metadata: {name: s}
            ---
            """);

        Assert.Empty(set.Errors);
        Assert.Equal("in.yaml:1:1", set.Namespaces.Single().Position.ToString());
        Assert.Equal("in.yaml:6:1", set.Services.Single().Position.ToString());
    }

    [Fact]
    public void An_error_in_a_later_document_names_its_line_in_the_file()
    {
        var set = Read("""
            apiVersion: v1
            kind: Namespace
            metadata: {name: a}
            ---
            apiVersion: lballocator.io/v1alpha1
            kind: IPAddressPool
            metadata:
              name: p
            spec:
              adresses: [192.0.2.0/24]
            """);

        var error = Assert.Single(set.Errors);
        Assert.StartsWith("in.yaml:10:3: IPAddressPool: unknown field \"adresses\"", error, StringComparison.Ordinal);
        Assert.Single(set.Namespaces);
    }

    [Fact]
    public void List_items_are_read_with_their_own_positions()
    {
        var set = Read("""
            apiVersion: v1
            kind: List
            items:
              - apiVersion: v1
                kind: Service
                metadata: {name: one}
              - apiVersion: v1
                kind: Widget
                metadata: {name: two}
            """);

        Assert.Equal("in.yaml:4:5", set.Services.Single().Position.ToString());
        Assert.Equal("in.yaml:7:5: unknown kind \"Widget\" in \"v1\": expected lballocator.io/v1alpha1 IPAddressPool or L2Advertisement, or v1 Service, Namespace or List", Assert.Single(set.Errors));
    }

    [Fact]
    public void Core_kinds_tolerate_fields_this_client_does_not_know()
    {
        var set = Read("""
            apiVersion: v1
            kind: Service
            metadata:
              name: s
              futureField: 1
            """);

        Assert.Empty(set.Errors);
        Assert.Equal("s", set.Services.Single().Value.Metadata.Name);
    }

    /// <summary>Each way the text can be unreadable, and the one line it becomes.</summary>
    public static TheoryData<string, string> Unreadable => new()
    {
        // Issue 11: a flow mapping left open; YamlDotNet throws InvalidOperationException with no position.
        { "apiVersion: v1\nkind: Namespace\nmetadata: {name: broken, namespace: lballocator-system\nspec:\n  x: 1\n", "in.yaml:4:1: invalid YAML: the '{' at 3:11 is not closed" },
        { "apiVersion: v1\nkind: Service\nmetadata:\n  name: [x\n", "in.yaml:5:1: invalid YAML: While parsing a flow sequence, did not find expected ',' or ']'" },
        { "a: 1\na: 2\n", "in.yaml:2:1: invalid YAML: Duplicate key a" },
        { "apiVersion: v1\nkind: Service\nmetadata:\n  name: *nope\n", "in.yaml:4:9: invalid YAML: *nope has no &nope before it in its document" },
        { "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\u0000\n", "in.yaml:4:10: character U+0000 is not allowed in YAML" },
        { "kind: Service\r\n\u0007", "in.yaml:2:1: character U+0007 is not allowed in YAML" },
        { "a: " + new string('[', 101) + new string(']', 101), "in.yaml:1:103: nested more than 100 levels deep" },
        { "apiVersion: v1\nkind: List\nitems: 5\n", "in.yaml:3:8: List: items: expected a list of objects" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports:\n    -\n    - port: 80\n", "in.yaml:6:6: Service: a list item is empty" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports: \"80\"\n", "in.yaml:5:10: Service: expected a list, found a string" },
        { "apiVersion: v1\nkind: Service\nmetadata: [a]\n", "in.yaml:3:11: Service: expected a mapping" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports: [{port: 99999999999999999999999}]\n", "in.yaml:5:18: Service: number out of range" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports: [{port: eighty}]\n", "in.yaml:5:18: Service: \"eighty\" is not a number" },
        { "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {autoAssign: yes please}\n", "in.yaml:4:20: IPAddressPool: The value \"yes please\" is not a valid YAML Boolean" },
        // MetalLB's weighted preferences are not ours (an ordered list of selectors): the field it has and we lack is named.
        { "apiVersion: lballocator.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: a}\nspec:\n  preferredNodeSelectors:\n    - weight: 100\n      preference: {matchLabels: {zone: a}}\n", "in.yaml:6:7: L2Advertisement: unknown field \"weight\"" },
        { "just a string\n", "in.yaml:1:1: expected a Kubernetes object (a mapping with apiVersion and kind)" },
        { "apiVersion: {v: 1}\nkind: Service\n", "in.yaml:1:1: object has no apiVersion or kind" },
    };

    [Theory]
    [MemberData(nameof(Unreadable))]
    public void Unreadable_text_is_one_error_with_its_position(string content, string expected)
    {
        var set = Read(content);

        Assert.Equal(expected, Assert.Single(set.Errors));
    }

    [Fact]
    public void Bytes_must_be_UTF8_and_the_first_bad_byte_is_located()
    {
        var set = new ManifestSet();
        ManifestReader.ReadBytes("in.yaml", [.. "apiVersion: v1\nkind: Service\nmetadata: {name: \"é"u8, 0xFF, .. "\"}\n"u8], set);

        Assert.Equal("in.yaml:3:20: not valid UTF-8 (byte 0xFF at offset 49)", Assert.Single(set.Errors));
    }

    [Fact]
    public void A_byte_order_mark_and_characters_beyond_the_basic_plane_are_fine()
    {
        var set = new ManifestSet();
        ManifestReader.ReadBytes("in.yaml", [0xEF, 0xBB, 0xBF, .. "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, annotations: {note: \"🦀\"}}\n"u8], set);

        Assert.Empty(set.Errors);
        Assert.Equal("🦀", set.Namespaces.Single().Value.Metadata.Annotations["note"]);
    }

    [Fact]
    public void Aliases_are_not_expanded_while_checking()
    {
        // Ten to the eighth list items if every alias were followed: it must take no time at all.
        var levels = string.Concat(Enumerable.Range(0, 8).Select(i => $"l{i + 1}: &l{i + 1} [{string.Join(",", Enumerable.Repeat($"*l{i}", 10))}]\n"));
        var set = Read($"l0: &l0 [x]\n{levels}apiVersion: lballocator.io/v1alpha1\nkind: L2Advertisement\nmetadata: {{name: a}}\n");

        Assert.Contains("unknown field \"l0\"", Assert.Single(set.Errors), StringComparison.Ordinal);
    }

    [Fact]
    public void A_plain_scalar_is_read_as_what_its_field_holds()
    {
        var set = Read("""
            apiVersion: v1
            kind: Service
            metadata:
              name: 123
              annotations: {port: 8080, enabled: true, ratio: 1.50, hex: 0x10, empty: "", none: ~}
              labels:
                on: yes
            spec:
              allocateLoadBalancerNodePorts: on
              ports:
                - {port: 0x50, targetPort: 8080, nodePort: "30080"}
                - {port: 443, targetPort: https}
            """);

        Assert.Empty(set.Errors);
        var service = set.Services.Single().Value;
        Assert.Equal("123", service.Metadata.Name);
        Assert.Equal(
            [("empty", ""), ("enabled", "true"), ("hex", "0x10"), ("none", null), ("port", "8080"), ("ratio", "1.50")],
            service.Metadata.Annotations.OrderBy(a => a.Key, StringComparer.Ordinal).Select(a => (a.Key, (string?)a.Value)));
        Assert.Equal("yes", service.Metadata.Labels["on"]);
        Assert.True(service.Spec.AllocateLoadBalancerNodePorts);
        Assert.Equal([80, 443], service.Spec.Ports.Select(p => p.Port));
        Assert.Equal(30080, service.Spec.Ports[0].NodePort);
        Assert.Equal(["8080", "https"], service.Spec.Ports.Select(p => p.TargetPort.Value));
    }

    [Fact]
    public void A_pool_reads_quoted_numbers_and_YAML_booleans_as_its_fields_want()
    {
        var set = Read("""
            apiVersion: lballocator.io/v1alpha1
            kind: IPAddressPool
            metadata: {name: p}
            spec:
              addresses: ['192.0.2.0/24']
              autoAssign: "false"
              avoidBuggyIPs: NO
              serviceAllocation: {priority: "5", namespaces: [1, 'b']}
            """);

        Assert.Empty(set.Errors);
        var spec = set.Pools.Single().Value.Spec;
        Assert.False(spec.AutoAssign);
        Assert.False(spec.AvoidBuggyIPs);
        Assert.Equal(5, spec.ServiceAllocation!.Priority);
        Assert.Equal(["1", "b"], spec.ServiceAllocation.Namespaces!);
    }

    /// <summary>What does not fit its field, at the node that does not fit; for our kinds, a key they lack at the key.</summary>
    public static TheoryData<string, string> Misfits => new()
    {
        { "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [192.0.2.0/24]\n  serviceAllocation:\n    namespaceSelectors:\n      - matchLabels: {a: b}\n        matchLabelz: {c: d}\n", "in.yaml:9:9: IPAddressPool: unknown field \"matchLabelz\"" },
        { "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [192.0.2.0/24]\n  serviceAllocation: {priority: high}\n", "in.yaml:6:33: IPAddressPool: \"high\" is not a number" },
        { "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: 192.0.2.0/24\n", "in.yaml:5:14: IPAddressPool: expected a list, found a string" },
        { "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [[192.0.2.0/24]]\n", "in.yaml:5:15: IPAddressPool: expected a string" },
        { "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  autoAssign: [true]\n", "in.yaml:5:15: IPAddressPool: expected true or false" },
        { "apiVersion: lballocator.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: a}\nspec: yes\n", "in.yaml:4:7: L2Advertisement: expected a mapping, found a string" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: a, labels: [x]}\n", "in.yaml:3:29: Service: expected a mapping, found a list" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80, targetPort: {name: http}}]}\n", "in.yaml:4:39: Service: expected a string" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1:90}]}\n", "in.yaml:4:23: Service: Invalid sexagesimal (base-60) digit: '90'. Digits after the first must be less than 60" },
        // The client's converters decide; their complaint points at the value.
        { "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  creationTimestamp: yesterday\n", "in.yaml:5:22: Service: Unable to parse yesterday as RFC3339 RFC3339Micro or RFC3339Nano" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: !secret a}\n", "in.yaml:3:18: Service: Encountered an unresolved tag '!secret'" },
        // Merged keys are checked where the anchor gave them, in the order they are met; our kinds refuse a key given
        // twice, pointing at the key in an object and at the mapping in a dictionary (labels), as KubernetesYaml did.
        { "apiVersion: lballocator.io/v1alpha1\nkind: L2Advertisement\nmetadata: &m {name: a}\nspec:\n  nodeSelectors:\n    - <<: *m\n      name: b\n", "in.yaml:3:15: L2Advertisement: unknown field \"name\"" },
        { "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [192.0.2.0/24]\n  serviceAllocation:\n    namespaceSelectors: [&s {matchLabels: {a: b}}]\n    serviceSelectors: [{<<: *s, matchLabels: {c: d}}]\n", "in.yaml:8:33: IPAddressPool: Encountered duplicate key matchLabels" },
        { "apiVersion: lballocator.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: a, labels: &l {x: y}}\nspec:\n  nodeSelectors:\n    - matchLabels: {<<: *l, x: z}\n", "in.yaml:6:20: L2Advertisement: Encountered duplicate key x" },
    };

    [Theory]
    [MemberData(nameof(Misfits))]
    public void A_value_that_does_not_fit_its_field_is_located(string content, string expected)
    {
        var set = Read(content);

        Assert.Equal(expected, Assert.Single(set.Errors));
    }

    [Fact]
    public void Merge_keys_are_spliced_in_and_later_keys_win_for_core_kinds()
    {
        var set = Read("""
            apiVersion: v1
            kind: List
            items:
              - apiVersion: v1
                kind: Namespace
                metadata: &base
                  name: first
                  labels: {team: a}
              - apiVersion: v1
                kind: Namespace
                metadata:
                  <<: *base
                  name: second
            """);

        Assert.Empty(set.Errors);
        Assert.Equal(["first", "second"], set.Namespaces.Select(n => n.Value.Metadata.Name));
        Assert.Equal("a", set.Namespaces[1].Value.Metadata.Labels["team"]);
    }

    [Fact]
    public void A_null_number_stays_at_its_default_as_before()
    {
        var set = Read("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{name: web, port: ~}]}\n");

        Assert.Empty(set.Errors);
        Assert.Equal(0, set.Services.Single().Value.Spec.Ports.Single().Port);
    }

    [Fact]
    public void Aliases_expanded_into_an_untyped_field_are_bounded()
    {
        // managedFields[].fieldsV1 takes any YAML: ten to the eighth values if every alias were written out. The error
        // points into the anchored node that is repeated.
        var levels = string.Concat(Enumerable.Range(0, 8).Select(i => $"  l{i + 1}: &l{i + 1} [{string.Join(",", Enumerable.Repeat($"*l{i}", 10))}]\n"));
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var set = Read($"apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  l0: &l0 [x]\n{levels}  managedFields: [{{fieldsV1: *l8}}]\n");

        Assert.Equal("in.yaml:5:12: Service: more than 100000 values once aliases are expanded", Assert.Single(set.Errors));
        Assert.InRange(clock.Elapsed.TotalSeconds, 0, 30);
    }

    [Fact]
    public void A_missing_path_and_an_unreadable_file_name_the_path()
    {
        var set = ManifestReader.ReadPaths(["/nonexistent/lballocator.yaml"]);

        Assert.Equal("/nonexistent/lballocator.yaml: no such file or directory", Assert.Single(set.Errors));
    }
}
