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
}
